"""The report of `rag bench`: its rows (ours, the baseline, the ratio) and the tables it prints."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

PER = 10_000  # sizes are reported per this many passages
MB = 1024 * 1024
# Share of the machine's CPU time taken by other processes above which the timings are flagged.
CONTENDED = 0.10


@dataclass(frozen=True)
class Row:
    """One line of the report: our figure, the baseline's, and ours / baseline."""

    what: str
    ours: float
    baseline: float
    unit: str  # unit of `ours` and `baseline`: "s", "ms", "passages/s" or "MB"
    share: bool = False  # the ratio is a share of the baseline (shown as a percentage)
    note: str = ""
    contention: float | None = None  # other processes' share of the CPU while this was measured

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")

    def to_dict(self) -> dict:
        ratio = self.ratio
        return {**asdict(self), "ratio": None if ratio != ratio else ratio}  # NaN is not JSON


def print_report(results: dict) -> None:
    """The whole report of `rag bench`, from the results it writes as JSON."""
    machine = results["machine"]
    print(f"rag bench: {machine['cpus']} CPUs, Python {machine['python']}, torch {machine['torch']}, "
          f"sentence-transformers {machine['sentence_transformers']}; model {results['model']} "
          f"({results['dimension']} dims)")
    contention = machine["contention"]
    if contention["share_of_machine"] is not None:
        print(f"other processes used {contention['other_cpu_seconds']:.0f} CPU-s during the run "
              f"({contention['share_of_machine']:.0%} of the machine)"
              + ("; WARNING: the timings are contended, re-run on an idle machine"
                 if contention["share_of_machine"] > CONTENDED else ""))
    corpus = results["corpus"]
    print(f"corpus: {corpus['description']}: {corpus['documents']} documents, {corpus['passages']:,} passages; "
          f"{corpus['questions']} questions")
    print(f"synthetic rows: {results['synthetic']['passages']:,} SYNTHETIC passages (clustered unit vectors shaped "
          f"like MiniLM's; corpus sentences with made-up words), written with rag.store.write and opened with "
          f"rag.store.load in fresh subprocesses\n")
    table = [("what", "ours", "baseline", "ratio")]
    flagged = False
    for row in results["rows"]:
        if row["ratio"] is None:
            ratio = "n/a"
        else:
            ratio = f"{row['ratio']:.0%}" if row["share"] else f"{row['ratio']:.2f}x"
        if (row["contention"] or 0) > CONTENDED:
            ratio += " !"
            flagged = True
        table.append((row["what"], _format(row["ours"], row["unit"]), _format(row["baseline"], row["unit"]), ratio))
    print_table(table, left_first=True)
    if flagged:
        print(f"! measured while other processes took over {CONTENDED:.0%} of the CPU: re-run on an idle machine")
    notes = [(row["what"], row["note"]) for row in results["rows"] if row["note"]]
    if notes:
        print("\nnotes:")
        for what, note in notes:
            print(f"  {what.split(' (')[0].split(' vs ')[0]}: {note}")
    print_growth(results["growth"])
    print_budgets(results)


def print_budgets(results: dict) -> None:
    """Issue 16's one-machine budgets, each PASS or FAIL, on the largest synthetic index."""
    if not results.get("budgets"):
        return
    passages = results["synthetic"]["passages"]
    binding = "" if results["budgets_enforced"] else " (set for 1,000,000: shown, not enforced)"
    print(f"\nbudgets (issue 16) on the SYNTHETIC index of {passages:,} passages{binding}:")
    table = [("what", "measured", "budget", "")]
    for check in results["budgets"]:
        at_most = not check["what"].startswith("dense recall")
        table.append((check["what"], f"{check['measured']:.3f}", f"{'<=' if at_most else '>='} {check['budget']:g}",
                      "PASS" if check["holds"] else "FAIL"))
    print_table(table, left_first=True)


def print_growth(growth: list[dict]) -> None:
    """The search-scaling table: one line per synthetic collection size."""
    print("\nsearch scaling on SYNTHETIC data (clustered unit vectors shaped like MiniLM embeddings of SQuAD, "
          "see eval/bench/synthetic.py;\ntexts: corpus sentences + Zipf-distributed made-up words). "
          "Latencies per question, "
          f"{growth[0]['open']['queries']} questions, one at a time;\n'exact' scans every vector; "
          "bytes and memory are per passage; write = rag.store.write, update = one document of 200 passages\n"
          "replaced (rag.store.write carrying the other rows over), open = rag.store.load of the updated index.")
    table = [("passages", "index", "write s", "(vectors/bm25)", "update s", "open s", "dense p50/p95 ms", "exact p50 ms",
              "recall@10", "bm25 p50/p95 ms", "hybrid p50/p95 ms", "disk B/psg", "open RSS B/psg", "write peak B/psg")]
    for size in growth:
        n, written, opened = size["passages"], size["write"], size["open"]
        spec = written["vector_index"]
        kind = "flat" if spec["kind"] == "flat" else f"ivf {spec['nlist']}/{spec['nprobe']}"
        stages = written.get("stages") or {}
        table.append((
            f"{n:,}", kind, f"{written['seconds']:.1f}",
            f"{stages.get('vectors', 0):.1f}/{stages.get('bm25', 0):.1f}", f"{size['update']['seconds']:.1f}",
            f"{opened['seconds']:.2f}",
            f"{opened['dense_ms']['p50']:.2f}/{opened['dense_ms']['p95']:.2f}", f"{opened['exact_ms']['p50']:.1f}",
            f"{opened['recall_at_10']:.3f}",
            f"{opened['bm25_ms']['p50']:.1f}/{opened['bm25_ms']['p95']:.1f}",
            f"{opened['hybrid_ms']['p50']:.1f}/{opened['hybrid_ms']['p95']:.1f}",
            f"{size['bytes_on_disk'] / n:,.0f}", f"{opened['resident_increase_bytes'] / n:,.0f}",
            f"{written['peak_increase_bytes'] / n:,.0f}",
        ))
    print_table(table)
    last = growth[-1]["open"]
    print(f"at {growth[-1]['passages']:,} passages: Assistant.open {last['assistant_open_seconds']:.2f} s, "
          f"then a first ask {last['first_ask_seconds']:.2f} s and a second {last['second_ask_seconds']:.2f} s "
          "(question model loaded before)")
    rate = growth[-1]["write"]["tokenizing_passages_per_second"]
    print(f"index = flat (exact) or ivf nlist/nprobe; write s excludes tokenizing for BM25 (rag.text.terms, "
          f"measured apart: {rate:,.0f} passages/s, i.e. {growth[-1]['passages'] / rate:,.0f} s more for "
          f"{growth[-1]['passages']:,} passages)")


def _format(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.2f} s" if value >= 0.1 else f"{value * 1000:.1f} ms"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "passages/s":
        return f"{value:,.0f} passages/s"
    return f"{value:,.1f} {unit}"


def print_table(table: Sequence[tuple[str, ...]], *, left_first: bool = False) -> None:
    """Columns aligned right (the first one left with `left_first`), a rule under the header line."""
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for number, line in enumerate(table):
        print("  ".join(cell.ljust(widths[i]) if left_first and i == 0 else cell.rjust(widths[i])
                        for i, cell in enumerate(line)))
        if number == 0:
            print("  ".join("-" * w for w in widths))
