"""`guichet nlu train | evaluate | shell`: the built-in engine's model, how good it is, and a
prompt to try messages on it (or on a Rasa server)."""

from __future__ import annotations

import asyncio
import random
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from bot.app import equip, intent_encoder, model_dir
from bot.config import Configuration, load_configuration
from bot.nlu_model import examples_of, load_or_train, train_with_threshold
from bot.policy import desk_articles, offer
from bot.progress import Progress
from nlu.classifier import IntentClassifier
from nlu.datasets import load_clinc150, load_csv, load_rasa_yaml
from nlu.engine import BuiltinEngine, RasaEngine
from nlu.evaluation import OUT_OF_SCOPE, OUT_OF_SCOPE_LABELS, Report, score, write_report


def train(config_dir: Path, force: bool) -> int:
    configuration = load_configuration(config_dir)
    progress = Progress("training intents", 1)
    model = load_or_train(
        configuration.training,
        model_dir(configuration.settings),
        progress.update,
        force=force,
        encoder=intent_encoder(configuration.settings),
    )
    progress.close()
    if model is None:
        print("Nothing to train: the configuration has fewer than two intents.")
        return 0
    examples = examples_of(configuration.training)
    verb = "trained" if model.trained else "already trained (use --force to train again)"
    print(
        f"{len(examples)} examples, {len({i for _, i in examples})} intents: {verb}.\n"
        f"model: {model.path}.npz\nout-of-scope threshold (tuned on held-out examples): {model.threshold:.3f}"
    )
    return 0


def decide(ranking: Sequence[tuple[str, float]], threshold: float) -> str:
    if not ranking:
        return OUT_OF_SCOPE
    intent, confidence = ranking[0]
    return OUT_OF_SCOPE if intent in OUT_OF_SCOPE_LABELS or confidence < threshold else intent


def evaluate(config_dir: Path, data: Path | None, engine: str, out_dir: Path) -> int:
    if data is not None and data.suffix == ".json":
        gold, predicted, threshold = _clinc150(data)
    else:
        configuration = load_configuration(config_dir)
        if data is None:
            test, classifier, threshold = _held_out(configuration)
        else:
            test = load_rasa_yaml(data) if data.suffix in (".yml", ".yaml") else load_csv(data)
            model = load_or_train(
                configuration.training,
                model_dir(configuration.settings),
                encoder=intent_encoder(configuration.settings),
            )
            if model is None:
                print("The configuration has no intents to evaluate.", file=sys.stderr)
                return 2
            classifier, threshold = model.classifier, model.threshold
        gold = [label for _, label in test]
        if engine == "rasa":
            predicted = asyncio.run(_rasa_predictions(configuration, [t for t, _ in test]))
            threshold = None
        else:
            progress = Progress("evaluating", len(test))
            predicted = []
            for n, (text, _) in enumerate(test):
                predicted.append(decide(classifier.predict(text), threshold))
                if n % 50 == 0:
                    progress.update(n)
            progress.close()
    report = score(gold, predicted, threshold)
    print(
        f"\nEngine: {engine}"
        + (f"   data: {data}" if data else "   data: held-out fifth of the configuration")
    )
    print("\n".join(report.lines()))
    json_path, png_path = write_report(report, gold, predicted, out_dir)
    print(f"\nwrote {json_path} and {png_path}")
    return 0


def _held_out(configuration: Configuration) -> tuple[list[tuple[str, str]], IntentClassifier, float]:
    """A fifth of each intent's examples kept for testing; the model learns from the rest."""
    by_label: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for example in examples_of(configuration.training):
        by_label[example[1]].append(example)
    rng = random.Random(1)
    fit: list[tuple[str, str]] = []
    test: list[tuple[str, str]] = []
    for label in sorted(by_label):
        items = by_label[label][:]
        rng.shuffle(items)
        cut = max(1, len(items) // 5)
        test.extend(items[:cut])
        fit.extend(items[cut:])
    progress = Progress("training intents", 1)
    classifier, threshold = train_with_threshold(
        fit, progress.update, encoder=intent_encoder(configuration.settings)
    )
    progress.close()
    return test, classifier, threshold


def _clinc150(path: Path) -> tuple[list[str], list[str], float]:
    splits = load_clinc150(path)
    progress = Progress("training on CLINC150", 1)
    classifier = IntentClassifier.train(
        [*splits["train"], *splits["oos_train"]], progress=progress.update, oos_label="oos"
    )
    progress.close()
    threshold = classifier.tune_threshold(splits["val"], [t for t, _ in splits["oos_val"]])
    test = [*splits["test"], *splits["oos_test"]]
    predicted = [decide(r, threshold) for r in classifier.predict_many([t for t, _ in test])]
    return [label for _, label in test], predicted, threshold


async def _rasa_predictions(configuration: Configuration, texts: Sequence[str]) -> list[str]:
    url = configuration.settings.nlu.rasa_url
    if not url:
        raise SystemExit("--engine rasa needs GUICHET_RASA_URL (e.g. http://127.0.0.1:5005)")
    builtin = BuiltinEngine(configuration.training, configuration.articles)
    rasa = RasaEngine(url, builtin, timeout=30)
    await rasa.start()
    progress = Progress("asking Rasa", len(texts))
    predicted = []
    try:
        for n, text in enumerate(texts):
            parse = await rasa.parse(text)
            if parse.engine != "rasa":
                raise SystemExit(f"Rasa at {url} did not answer")
            name = parse.intent.name if parse.intent else OUT_OF_SCOPE
            predicted.append(OUT_OF_SCOPE if name in OUT_OF_SCOPE_LABELS else name)
            progress.update(n + 1)
    finally:
        progress.close()
        await rasa.close()
    return predicted


def shell(config_dir: Path, engine: str) -> int:
    configuration = load_configuration(config_dir)
    builtin = BuiltinEngine(
        configuration.training, configuration.articles, configuration.settings.default_language
    )
    equip(builtin, configuration)
    url = configuration.settings.nlu.rasa_url
    print(
        f"Type a message (Ctrl-D to quit). Engine: {engine}{' at ' + url if engine == 'rasa' and url else ''}"
    )
    rasa = RasaEngine(url, builtin) if engine == "rasa" and url else None
    answering = configuration.settings.answering

    async def loop() -> None:
        if rasa is not None:
            await rasa.start()
        try:
            while True:
                try:
                    text = await asyncio.to_thread(input, "> ")
                except EOFError:
                    print()
                    return
                parse = await (rasa.parse(text) if rasa is not None else builtin.parse(text))
                print(f"  language   {parse.language}    engine {parse.engine}")
                if parse.intent:
                    print(f"  intent     {parse.intent.name} ({parse.intent.confidence:.2f})")
                print("  ranking    " + ", ".join(f"{r.name} {r.confidence:.2f}" for r in parse.ranking[:4]))
                for e in parse.entities:
                    print(f"  entity     {e.entity} = {e.value!r}  ({e.text!r})")
                # What the desk would offer: the questions' matches (by their words, and their
                # sentence vectors with the encoder), and the articles of a sure intent.
                words = {m.article_id: m.score for m in parse.kb_matches}
                matched = "words" if builtin.kb.encoder is None else "words+vector"
                offered = desk_articles(parse, builtin, answering)
                for m in offered[:3]:
                    why = matched if words.get(m.article_id) == m.score else "intent"
                    print(f"  article    {m.article_id} ({m.score:.2f}, {why}) {m.title}")
                # Close in words, but the answer to an intent the model finds unlikely.
                kept = {m.article_id for m in offered}
                for m in parse.kb_matches[:3]:
                    if m.article_id not in kept and m.score >= answering.suggest_threshold:
                        print(f"  set aside  {m.article_id} ({m.score:.2f}, {matched}): another intent")
                # And what the chat does with them (bot.policy.offer).
                step, chosen = offer(offered, parse, builtin, answering, parse.language)
                ids = ", ".join(m.article_id for m in chosen)
                print(
                    "  the chat   "
                    + {"answer": f"answers {ids}", "choose": f"offers a choice: {ids}"}.get(
                        step, "offers a ticket"
                    )
                )
        finally:
            if rasa is not None:
                await rasa.close()

    asyncio.run(loop())
    return 0


__all__ = ["Report", "evaluate", "shell", "train"]
