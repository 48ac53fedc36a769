"""Time routing rule evaluation per mail for a rule set of 1,000 rules.

Usage: python benchmarks/rules.py [--rules 1000] [--repeat 5] [CORPUS_DIR]

The mails are the .eml files of CORPUS_DIR (default: the hunnysoft corpus
in ../shared beside the checkout), parsed once before timing. Each case
times building the mail's condition values and evaluating every rule,
trace included, as processing and ``mailgate rules test`` do. Parsing the
mail and the store's work are not included.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from mailgate.parsing import parse_message
from mailgate.rules import MailFacts, RuleSet, parse_rule_set

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "hunnysoft"
TEXT_FIELDS = ["subject", "from", "from-domain", "to", "cc", "reply-to", "body",
               "header:X-Mailer", "header:X-Spam-Flag", "attachment-name", "attachment-type",
               "envelope-recipient"]
OPERATORS = ["equals", "contains", "starts-with", "ends-with", "not-contains", "not-equals"]


def make_rules(count: int, regex_share: float, seed: int = 1) -> list[dict]:
    """Rules of one to three conditions over every text field, a share of
    them regular expressions; few match, as in a real rule set."""
    chooser = random.Random(seed)
    rules = []
    for index in range(count):
        conditions = []
        for _ in range(chooser.randint(1, 3)):
            field = chooser.choice(TEXT_FIELDS)
            if chooser.random() < regex_share:
                conditions.append({"field": field, "operator": "matches",
                                   "value": rf"(order|invoice)[ -]?{index}\d{{2,}}"})
            else:
                conditions.append({"field": field, "operator": chooser.choice(OPERATORS),
                                   "value": f"word{chooser.randint(0, 10_000)}"})
        if chooser.random() < 0.1:
            conditions.append({"field": "size", "operator": "greater-than", "value": "100K"})
        rules.append({
            "name": f"rule {index}", "match": chooser.choice(["all", "any"]),
            "conditions": conditions, "actions": {"tags": [f"t{index}"]},
        })
    return rules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--rules", type=int, default=1000, help="rules per rule set")
    parser.add_argument("--repeat", type=int, default=5, help="passes over the corpus")
    args = parser.parse_args(argv)
    files = sorted(args.corpus.glob("*.eml"))
    if not files:
        print(f"no .eml files in {args.corpus}", file=sys.stderr)
        return 1
    mails = []
    for path in files:
        raw = path.read_bytes()
        mails.append((parse_message(raw), len(raw)))
    print(f"{len(mails)} mails of corpus {args.corpus.name}, {args.repeat} passes, "
          f"{args.rules} rules per set, Python {sys.version.split()[0]}")
    for label, regex_share in (("no regular expressions", 0.0),
                               ("20% regular expressions", 0.2),
                               ("all regular expressions", 1.0)):
        definitions = make_rules(args.rules, regex_share)
        start = time.perf_counter()
        rule_set = RuleSet(parse_rule_set(definitions))
        compile_ms = (time.perf_counter() - start) * 1000
        timings = []
        for _ in range(args.repeat):
            for mail, size in mails:
                start = time.perf_counter()
                facts = MailFacts(mail, rcpt_tos=["support@example.org"], size=size,
                                  automatic=None)
                rule_set.evaluate(facts, "new")
                timings.append(time.perf_counter() - start)
        per_mail_ms = statistics.mean(timings) * 1000
        p95_ms = statistics.quantiles(timings, n=20)[-1] * 1000
        print(f"{label:<24} validate+compile {compile_ms:7.1f} ms once; "
              f"evaluate {len(timings)} mails: mean {per_mail_ms:.2f} ms/mail, "
              f"p95 {p95_ms:.2f} ms/mail")
    return 0


if __name__ == "__main__":
    sys.exit(main())
