"""Write the small own-data example: ``interactions.csv`` (who read which book, when, how many stars) and
``items.csv`` (book id, title, description), as a person might keep them by hand.

Planted signal: each reader has one or two favourite subjects (space, cooking, detective stories, gardening,
history) and reads mostly books on them; the titles and descriptions use each subject's words, so a model of
what a reader likes (and a content model reading the text) beats recommending the most read books. A few rows
are repeated, as in a log kept by hand, and a few books nobody has read yet are listed in ``items.csv``.

Run once (seeded; the CSVs are committed):  python examples/make_example.py
"""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import numpy as np

SUBJECTS = {  # subject: (title nouns, phrases its descriptions are made of)
    "space": (["Orbit", "Nebula", "Comet", "Red Planet", "Star Harbour", "Moon Base", "Launch Window", "Deep Field"],
              ["a crew of astronauts on a long voyage", "rockets, stars and the silence of orbit",
               "a colony on a cold moon", "the first landing on a distant planet", "a signal from deep space",
               "a space station running out of air"]),
    "cooking": (["Kitchen", "Bread", "Spice Road", "Slow Supper", "Sourdough", "Pantry", "Copper Pan", "Harvest Table"],
                ["recipes from a family kitchen", "bread, soups and spices", "notes on baking and slow cooking",
                 "a chef's season of vegetables", "sauces, stews and a good oven", "suppers for friends"]),
    "detective": (["Alibi", "Last Witness", "Locked Room", "Cold Case", "Inspector", "Footprints", "Night Train",
                   "False Clue"],
                  ["a detective follows the clues of a murder", "alibis, witnesses and lies",
                   "an inspector and a locked room", "a cold case reopened", "a suspect who vanished",
                   "a crime on the night train"]),
    "gardening": (["Seed", "Greenhouse", "Rose Border", "Allotment", "Compost", "Orchard", "Herb Garden", "Meadow"],
                  ["a gardener's year of seeds and roses", "compost, soil and vegetable beds", "advice on pruning",
                   "an orchard of old apple trees", "herbs and flowers for a small garden",
                   "a greenhouse through the winter"]),
    "history": (["Empire", "Crown", "Old Kingdom", "Siege", "Silk Road", "Revolution", "Pharaoh", "Battlefield"],
                ["the history of kings and empires", "wars told through letters and maps",
                 "the lives of ordinary people in a century of change", "a siege and the city that survived",
                 "merchants on the silk road", "the fall of an ancient kingdom"]),
}
OPENERS = ["The", "A Year of", "Beyond the", "Letters from the", "Notes on the", "Return to the", "Under the",
           "After the"]
NAMES = ["ana", "ben", "carla", "dev", "elif", "finn", "gita", "hugo", "ines", "jon", "kemal", "lena", "marco",
         "nadia", "omar", "paula", "quinn", "rosa", "sam", "tara", "umar", "vera", "wes", "xenia", "yusuf", "zoe",
         "alba", "bruno", "chen", "dora", "emil", "fatima", "greg", "hana", "ivan", "julia", "kofi", "lucia",
         "milan", "nora", "oscar", "pia", "raj", "sofia", "theo", "ulla", "victor", "wanda", "yara", "zain",
         "amir", "bea", "cyril", "daria", "eva", "felix", "gwen", "hamid", "iris", "jakob"]


def main(out: Path = Path(__file__).parent, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    subjects = list(SUBJECTS)
    books = []  # (book id, subject, title, description)
    for s_idx, subject in enumerate(subjects):
        nouns, phrases = SUBJECTS[subject]
        for j, noun in enumerate(nouns):
            opener = OPENERS[(j + 3 * s_idx) % len(OPENERS)]
            title = f"{opener} {noun}"
            first, second = rng.choice(len(phrases), size=2, replace=False)
            description = f"{phrases[first].capitalize()}; {phrases[second]}."
            books.append((f"bk{100 + 10 * s_idx + j}", subject, title, description))
    n_books = len(books)
    unread = {b[0] for b in books[7::8]}  # the last book of each subject: new, nobody has read it yet
    by_subject = {s: [k for k, b in enumerate(books) if b[1] == s and b[0] not in unread] for s in subjects}
    fame = 1.0 / np.arange(1, n_books + 1) ** 0.7  # some books are read far more than others
    fame = fame[rng.permutation(n_books)]
    rows = []
    for name in NAMES:
        liked = list(rng.choice(len(subjects), size=rng.integers(1, 3), replace=False))
        n_read = int(rng.integers(6, 13))
        pool_liked = np.array([k for s in liked for k in by_subject[subjects[s]]])
        pool_other = np.array([k for k in range(n_books) if k not in set(pool_liked) and books[k][0] not in unread])
        n_liked = min(len(pool_liked), int(round(0.85 * n_read)))
        p = fame[pool_liked] / fame[pool_liked].sum()
        read = list(rng.choice(pool_liked, size=n_liked, replace=False, p=p))
        q = fame[pool_other] / fame[pool_other].sum()
        read += list(rng.choice(pool_other, size=n_read - n_liked, replace=False, p=q))
        day = date(2024, 1, 1) + timedelta(days=int(rng.integers(0, 60)))
        for k in rng.permutation(read):
            day += timedelta(days=int(rng.integers(1, 20)))
            stars = int(np.clip(rng.normal(4.3 if books[k][1] in [subjects[s] for s in liked] else 2.8, 0.8), 1, 5))
            rows.append((name, books[k][0], stars, day.isoformat()))
    for r in rng.choice(len(rows), size=3, replace=False):  # a row typed twice
        rows.insert(int(r) + 1, rows[int(r)])
    with open(out / "interactions.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["reader", "book", "stars", "date"])
        w.writerows(rows)
    with open(out / "items.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["book", "title", "description"])
        w.writerows((b[0], b[2], b[3]) for b in books)
    print(f"{len(rows)} interactions of {len(NAMES)} readers, {n_books} books ({len(unread)} unread) -> {out}")


if __name__ == "__main__":
    main()
