"""Precompute the trained router's P(suits SoT) for a question set, for the GPU load test's ``mode="auto"``.

The GPU machine cannot take the MiniLM encoder along (90 MB, over the device's 64 MiB carry with vLLM), so the
question classifier runs here and the device gets its outputs; the device then runs the real ``SoTRouter``
with the real ``LoadPolicy`` on the live engine's load. Only the encoder's few milliseconds are left out.

Usage: python benchmarks/gpu/router_probs.py QUESTIONS_CSV OUT_JSON
"""

from __future__ import annotations

import csv
import json
import sys

from sotrag.app.config import Settings
from sotrag.app.routing.factory import router_from_config


def main() -> None:
    src, out = sys.argv[1], sys.argv[2]
    with open(src, newline="") as f:
        questions = [r["request"].strip() for r in csv.DictReader(f) if r["request"].strip()]
    router = router_from_config(Settings().router)
    clf = router.classifier
    probs = {q: float(clf.probability(q)) for q in questions}
    with open(out, "w") as f:
        json.dump({"name": clf.name, "threshold": clf.threshold, "probabilities": probs}, f, indent=1)
    print(f"{sum(p >= clf.threshold for p in probs.values())}/{len(probs)} questions at or above {clf.threshold}")


if __name__ == "__main__":
    main()
