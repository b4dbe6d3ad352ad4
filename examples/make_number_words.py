"""Make examples/data/number_words_en_fr.tsv: English -> French number words, 1..1999.

Run once (``pip install num2words``; the TSV is shipped, so nobody needs to run it again):

    python examples/make_number_words.py

Both sides come from the ``num2words`` package (Savoir-faire Linux et al., LGPL), nobody
here wrote a translation: ``num2words(n, lang="en")`` and ``num2words(n, lang="fr")``.
Two changes, both so that a word is a token: hyphens and commas become spaces
("seventy-one" -> "seventy one", "quatre-vingt-dix-sept" -> "quatre vingt dix sept").
French counts in twenties, so "ninety seven" (two words) is "quatre vingt dix sept"
(four, in another order of magnitude): a translation that needs real alignment.
"""

from __future__ import annotations

import csv
from pathlib import Path

from num2words import num2words

OUT = Path(__file__).resolve().parent / "data" / "number_words_en_fr.tsv"


def words(n: int, lang: str) -> str:
    return " ".join(num2words(n, lang=lang).replace("-", " ").replace(",", " ").split())


def main() -> None:
    with open(OUT, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, delimiter="\t", lineterminator="\n")
        out.writerow(["n", "source", "target"])
        for n in range(1, 2000):
            out.writerow([n, words(n, "en"), words(n, "fr")])
    print(f"wrote {OUT} (1999 pairs)")


if __name__ == "__main__":
    main()
