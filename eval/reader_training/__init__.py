"""Training the learned reader (rag.reader): one module per step, run by `python -m eval.train_reader`.

- `settings`: everything that decides the weights (sources, their caps and weights, the schedule);
- `sources`: which shared data files make up each source, and their sha256;
- `data`: reading SQuAD-format files into documents and questions, and the split by document;
- `mining`: each question's candidates from the project's own hybrid search, per source, cached;
- `checkpoints` and `loop`: a training loop that checkpoints atomically and resumes;
- `training`: the reader's training pairs, batches and model (torch);
- `export`: ONNX export and the int8 model the package ships (`export_reader`);
- `fitting`: the fusion, the abstention and the span choice, fitted on held-out questions;
- `figures`: the measures reported per source and in reader.json;
- `bounds`: what bounds the shipped reader (`--stage bounds`);
- `estimate`: a run's size and minutes before running it (`--stage estimate`);
- `progress`: progress lines with a rate and an ETA;
- `stages`: the steps in order, each runnable alone (`--stage`); `cli`: the command.

docs/training.md says how to run it and how to judge a new model.
"""
