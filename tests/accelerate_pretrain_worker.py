"""Run by `accelerate launch` in the multi-process test: examples/pretrain.py's main with a few hooks that record,
per rank, the N3S index builds, the model saves and a checksum of the trained weights (files in $RECORD_DIR)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import load_example  # noqa: E402

RECORD_DIR = Path(os.environ["RECORD_DIR"])


def record(kind: str, text: str = "") -> None:
    rank = os.environ.get("RANK", "0")
    with open(RECORD_DIR / f"{kind}-rank{rank}.txt", "a") as f:
        f.write(text + "\n")


def main() -> None:
    example = load_example("pretrain")
    build = example.build_n3s_index_from_embeddings

    def counted_build(*args, **kwargs):
        record("n3s_build")
        return build(*args, **kwargs)

    trainers = []

    class RecordingTrainer(example.DBetaPreTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trainers.append(self)

    save_pretrained = example.DBetaForPreTraining.save_pretrained

    def counted_save(model, *args, **kwargs):
        record("save", str(args[0] if args else kwargs.get("save_directory")))
        return save_pretrained(model, *args, **kwargs)

    import dbeta_hf.data.synthetic as synthetic

    make_corpus = synthetic.make_synthetic_corpus

    def counted_corpus(*args, **kwargs):
        record("synthesis")
        return make_corpus(*args, **kwargs)

    synthetic.make_synthetic_corpus = counted_corpus
    example.build_n3s_index_from_embeddings = counted_build
    example.DBetaPreTrainer = RecordingTrainer
    example.DBetaForPreTraining.save_pretrained = counted_save
    summary = example.main(sys.argv[1:])
    model = trainers[0].accelerator.unwrap_model(trainers[0].model)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    record("weights", digest.hexdigest())
    record("world", f"{trainers[0].args.world_size} {summary['last_log'].get('loss')}")


if __name__ == "__main__":
    main()
