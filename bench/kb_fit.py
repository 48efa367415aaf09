"""Fit how the knowledge base ranks and calibrates its articles (nlu/kb_ranking.json).

    python bench/kb_fit.py [--data ../shared/data] [--write] [--limit 600]

On the development desks (bench/dev-desks) and the public intent sets made desks as bench/kb.py
makes them (CLINC150, BANKING77, HWU64: one article per intent, three of its training lines as
questions), never on the frozen desks (bench/desks), each feature set of nlu/kb_ranking.py gets:

* its features' means and scales (every desk weighing the same);
* the weights of its score: the softmax over a desk's articles that gives the right article the
  highest likelihood, with a small L2 penalty;
* its calibration: a logistic function of an article's score and of its lead over the best other
  article, fit to whether it is the right one (out-of-scope questions: none is), over each
  question's five best articles.

It first prints what a desk that took no part in the fit gets (each desk left out in turn, the
fit made on the others): the right article first, among the first three, and the first reply
the answering ladder gives at a few thresholds (answered right, answered or offered, answered
wrong; out-of-scope questions answered or offered). Then, with --write, it fits on every desk
and writes nlu/kb_ranking.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.kb import DEVELOPMENT, PUBLIC, build, write_configuration  # noqa: E402
from bot.progress import Progress  # noqa: E402
from nlu.encoder import (  # noqa: E402
    USE_MULTILINGUAL,
    PassageEncoder,
    passage_encoder_unavailable,
    shared,
    shared_passage_encoder,
)
from nlu.kb import load_articles  # noqa: E402
from nlu.kb_ranking import FEATURE_SETS, PARAMETERS, VECTOR_FEATURES, Ranking  # noqa: E402
from nlu.retrieval import KnowledgeBase  # noqa: E402

FloatArray = npt.NDArray[np.float32]
TOP = 5  # the best articles of each question the calibration learns from
L2 = 0.01
FLOOR = 0.02


@dataclass
class DeskData:
    name: str
    sets: dict[str, FloatArray]  # feature set -> (questions, articles, features)
    gold: npt.NDArray[np.int64]  # the right article's position, -1 out of scope


def desk_data(
    name: str, data: Path, limit: int | None, scratch: Path, second: PassageEncoder | None
) -> DeskData:
    desk = build(name, data, limit)
    config = write_configuration(desk, scratch / name)
    articles, problems = load_articles(config / "kb")
    if problems:
        raise SystemExit(f"{name}: {problems[0]}")
    kb = KnowledgeBase(articles, shared(USE_MULTILINGUAL), passage_encoder=second)
    position = {article_id: n for n, article_id in enumerate(kb.ids)}
    vectors, words = [], []
    progress = Progress(f"{name}: features", len(desk.questions))
    for n, question in enumerate(desk.questions):
        vectors.append(kb.features(question.text, vectors=True))
        words.append(kb.features(question.text, vectors=False))
        progress.update(n + 1)
    progress.close()
    gold = np.array([position[q.article] if q.article else -1 for q in desk.questions], dtype=np.int64)
    found = np.stack(vectors)
    # With the second encoder, the first columns are the vectors set's, computed the same way.
    sets = {"vectors": found[:, :, : len(VECTOR_FEATURES)], "words": np.stack(words)}
    if second is not None:
        sets["vectors_e5"] = found
    return DeskData(name, sets, gold)


def fit(desks: Sequence[DeskData], feature_set: str) -> Ranking:
    from scipy.optimize import minimize  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    names = FEATURE_SETS[feature_set]
    # Means and scales: each desk's own, averaged (a desk of 150 articles weighs as one of 24).
    mean = np.mean([d.sets[feature_set].reshape(-1, len(names)).mean(0) for d in desks], axis=0)
    scale = np.mean([d.sets[feature_set].reshape(-1, len(names)).std(0) for d in desks], axis=0) + 1e-6
    standard = [((d.sets[feature_set] - mean) / scale, d.gold) for d in desks]
    answered = [(x[g >= 0], g[g >= 0]) for x, g in standard]

    def loss(w: FloatArray) -> tuple[float, FloatArray]:
        total, grad = 0.0, np.zeros_like(w)
        for x, g in answered:
            s = x @ w
            s -= s.max(axis=1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=1, keepdims=True)
            rows = np.arange(len(g))
            total += float(-np.log(p[rows, g] + 1e-12).mean())
            grad += -(x[rows, g] - (p[:, :, None] * x).sum(axis=1)).mean(axis=0)
        return total + L2 * float(w @ w), grad + 2 * L2 * w

    weights = minimize(loss, np.ones(len(names)), jac=True, method="L-BFGS-B").x.astype(np.float32)
    n = len(names)
    partial = Ranking(
        names, mean.astype(np.float32), scale.astype(np.float32), weights, np.zeros(n + 3, dtype=np.float32)
    )
    rows, labels, sample_weights = [], [], []
    for d in desks:
        found, right = [], []
        for x, gold in zip(d.sets[feature_set], d.gold, strict=True):
            inputs = partial.inputs(x)
            for k in np.argsort(-inputs[:, 0])[:TOP]:
                found.append(inputs[k])
                right.append(k == gold)
        rows += found
        labels += right
        sample_weights += [1.0 / len(found)] * len(found)
    model = LogisticRegression(C=1.0, max_iter=1000).fit(
        np.array(rows), np.array(labels), sample_weight=np.array(sample_weights) * len(desks) * 100
    )
    calibration = np.append(model.coef_[0], model.intercept_[0]).astype(np.float32)
    return Ranking(names, partial.mean, partial.scale, weights, calibration)


@dataclass
class Outcome:
    in_scope: int = 0
    out_of_scope: int = 0
    first: int = 0
    three: int = 0
    right: int = 0
    right_or_click: int = 0
    wrong: int = 0
    oos_given: int = 0
    oos_offered: int = 0


def replies(
    ranking: Ranking, d: DeskData, feature_set: str, answer: float, suggest: float, margin: float
) -> Outcome:
    """The first reply the answering ladder (bot/policy.py `ladder`) gives each question."""
    out = Outcome()
    for x, gold in zip(d.sets[feature_set], d.gold, strict=True):
        p = ranking.probabilities(x)
        order = np.argsort(-p)
        given = order[0] if p[order[0]] >= answer and p[order[0]] - p[order[1]] >= margin else None
        offered = (
            [] if given is not None or p[order[0]] < suggest else [k for k in order[:3] if p[k] >= FLOOR]
        )
        if gold < 0:
            out.out_of_scope += 1
            out.oos_given += given is not None
            out.oos_offered += bool(offered)
            continue
        out.in_scope += 1
        out.first += order[0] == gold
        out.three += gold in order[:3]
        out.right += given == gold
        out.wrong += given is not None and given != gold
        out.right_or_click += given == gold or gold in offered
    return out


def share(n: int, total: int) -> str:
    return f"{n / total:6.1%}" if total else "     —"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=600, help="questions per public set (seed 42)")
    parser.add_argument("--write", action="store_true", help=f"write {PARAMETERS.relative_to(ROOT)}")
    args = parser.parse_args()
    names = [*DEVELOPMENT, *PUBLIC]
    began = time.perf_counter()
    missing = passage_encoder_unavailable()
    if missing:
        print(f"without the second encoder ({missing}): its feature set is not fit", file=sys.stderr)
    second = None if missing else shared_passage_encoder()
    with tempfile.TemporaryDirectory(prefix="guichet-kb-fit-") as scratch:
        desks = [desk_data(name, args.data, args.limit, Path(scratch), second) for name in names]
    feature_sets = [f for f in FEATURE_SETS if all(f in d.sets for d in desks)]
    print(f"\nfeatures of {len(desks)} desks in {time.perf_counter() - began:.0f} s")
    thresholds = [(a, s) for a in (0.6, 0.7, 0.8) for s in (0.15, 0.2, 0.3)]
    for feature_set in feature_sets:
        print(f"\n{feature_set}: each desk left out of the fit in turn")
        print(
            f"{'desk':<12}{'answer':>7}{'offer':>6}{'first':>8}{'top 3':>8}{'right':>8}{'+click':>8}"
            f"{'wrong':>8}{'oos ans':>8}{'oos off':>8}"
        )
        for d in desks:
            ranking = fit([o for o in desks if o is not d], feature_set)
            for answer, suggest in thresholds:
                o = replies(ranking, d, feature_set, answer, suggest, 0.08)
                print(
                    f"{d.name:<12}{answer:>7}{suggest:>6}{share(o.first, o.in_scope):>8}"
                    f"{share(o.three, o.in_scope):>8}{share(o.right, o.in_scope):>8}"
                    f"{share(o.right_or_click, o.in_scope):>8}{share(o.wrong, o.in_scope):>8}"
                    f"{share(o.oos_given, o.out_of_scope):>8}{share(o.oos_offered, o.out_of_scope):>8}"
                )
    if args.write:
        fitted = {feature_set: fit(desks, feature_set).as_json() for feature_set in feature_sets}
        fitted["fit on"] = names  # type: ignore[assignment]
        PARAMETERS.write_text(json.dumps(fitted, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {PARAMETERS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
