"""A seeded synthetic catalog with planted structure, for the quickstart and for tests.

* Items belong to one topic (of ``num_topics``), each with its own words, a category and a price
  range; titles and descriptions are built from the topic's words, so text carries the topic.
* Popularity within a topic follows a power law (Zipf exponent ``popularity_exponent``).
* Each user has a few interests (a mixture over topics) that drift over time: the mixture moves
  from a starting one to an end one that keeps one interest and adds a new topic.
* Timestamps are increasing per user inside a global window.

The planted signal: a user's future items come mostly from the topics of the user's past items,
so a model that learns co-occurrence beats popularity by a wide margin (tests rely on this).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import Dataset
from .interactions import Interactions
from .tables import Table
from .vocab import Vocabulary

_TOPICS = [
    # (name, category, nouns, qualifiers, price median)
    ("hiking", "Outdoors", ["backpack", "trail map", "water filter", "trekking pole", "tent"],
     ["ultralight", "waterproof", "alpine", "trail"], 60.0),
    ("cooking", "Kitchen", ["chef knife", "skillet", "cookbook", "spice set", "dutch oven"],
     ["cast-iron", "italian", "weeknight", "rustic"], 40.0),
    ("coffee", "Kitchen", ["pour-over kettle", "burr grinder", "espresso blend", "french press", "milk frother"],
     ["single-origin", "dark roast", "barista", "cold brew"], 30.0),
    ("running", "Sports", ["running shoe", "gps watch", "hydration vest", "training plan", "compression sock"],
     ["marathon", "trail-running", "lightweight", "tempo"], 80.0),
    ("gaming", "Electronics", ["controller", "headset", "strategy game", "gaming mouse", "capture card"],
     ["wireless", "competitive", "open-world", "retro"], 55.0),
    ("photography", "Electronics", ["prime lens", "tripod", "camera bag", "light meter", "film roll"],
     ["portrait", "mirrorless", "analog", "wide-angle"], 120.0),
    ("gardening", "Home & Garden", ["pruning shears", "seed kit", "raised bed", "watering can", "compost bin"],
     ["heirloom", "organic", "balcony", "perennial"], 25.0),
    ("yoga", "Sports", ["yoga mat", "meditation cushion", "yoga block", "breathing guide", "stretch strap"],
     ["restorative", "non-slip", "mindful", "hot-yoga"], 30.0),
    ("baking", "Kitchen", ["stand mixer", "sourdough starter", "loaf pan", "pastry guide", "proofing basket"],
     ["artisan", "gluten-free", "french", "holiday"], 35.0),
    ("cycling", "Sports", ["bike light", "saddle bag", "cycling jersey", "repair kit", "bike computer"],
     ["gravel", "commuter", "carbon", "touring"], 70.0),
    ("board games", "Hobbies", ["deck-building game", "dice set", "card sleeves", "cooperative game", "game table"],
     ["family", "two-player", "legacy", "party"], 35.0),
    ("jazz", "Music", ["vinyl record", "trumpet mute", "songbook", "turntable", "saxophone reed"],
     ["bebop", "smooth", "live", "big-band"], 28.0),
    ("aquarium", "Pets", ["fish tank", "aquarium filter", "water conditioner", "led aquarium light", "plant substrate"],
     ["freshwater", "reef", "nano", "planted"], 45.0),
    ("knitting", "Hobbies", ["merino yarn", "circular needles", "pattern book", "stitch markers", "yarn bowl"],
     ["chunky", "lace", "beginner", "hand-dyed"], 22.0),
    ("astronomy", "Hobbies", ["telescope", "star chart", "red flashlight", "eyepiece kit", "planisphere"],
     ["deep-sky", "backyard", "planetary", "refractor"], 150.0),
    ("skincare", "Beauty", ["face serum", "sunscreen", "night cream", "clay mask", "cleanser"],
     ["hydrating", "fragrance-free", "vitamin-c", "gentle"], 26.0),
]
_ADJECTIVES = ["classic", "compact", "premium", "essential", "everyday", "deluxe", "pro", "starter", "modern",
               "handmade"]


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and shape of the generated catalog."""

    num_users: int = 2000
    """Number of users."""
    num_items: int = 800
    """Number of items (spread over the topics)."""
    num_topics: int = 12
    """Topics in use (at most 16)."""
    interests_per_user: int = 2
    """Topics a user starts with; drift adds one more."""
    mean_events: float = 30.0
    """Mean number of events per user (log-normal, at least 6)."""
    popularity_exponent: float = 0.9
    """Zipf exponent of item popularity within a topic."""
    noise: float = 0.05
    """Share of events drawn uniformly from the whole catalog."""
    seed: int = 7
    """Random seed: the same config gives the same dataset."""
    scale: str = "default"
    """``tiny`` (tests), ``default`` or ``large``; overrides the sizes above when not ``default``."""

    def resolved(self) -> SyntheticConfig:
        from dataclasses import replace

        if self.scale == "tiny":
            return replace(self, num_users=300, num_items=200, num_topics=8, mean_events=20.0, scale="default")
        if self.scale == "large":
            return replace(self, num_users=20000, num_items=5000, num_topics=16, scale="default")
        if self.scale != "default":
            from ..errors import ConfigError

            raise ConfigError(f"synthetic scale must be tiny, default or large (--data synthetic:tiny), "
                              f"got {self.scale!r}")
        return self


def generate(config: SyntheticConfig | None = None) -> Dataset:
    """Generate the dataset described by ``config`` (deterministic for a seed)."""
    cfg = (config or SyntheticConfig()).resolved()
    rng = np.random.default_rng(cfg.seed)
    n_topics = min(cfg.num_topics, len(_TOPICS))
    topics = _TOPICS[:n_topics]

    # -- items ----------------------------------------------------------------------------------
    item_topic = np.sort(rng.integers(0, n_topics, cfg.num_items))
    titles, descs, cats, tags, prices = [], [], [], [], []
    for t in item_topic:
        name, cat, nouns, quals, price = topics[t]
        noun, qual, adj = nouns[rng.integers(len(nouns))], quals[rng.integers(len(quals))], \
            _ADJECTIVES[rng.integers(len(_ADJECTIVES))]
        titles.append(f"{adj.capitalize()} {qual} {noun}")
        extra = [w for w in quals if w != qual][rng.integers(len(quals) - 1)]
        descs.append(f"A {adj} {noun} for {name} fans: {qual}, {extra} and built to last.")
        cats.append(cat)
        tags.append((name, qual))
        prices.append(round(float(price * rng.lognormal(0.0, 0.4)), 2))
    # power-law popularity within each topic
    pop = np.empty(cfg.num_items)
    members = [np.flatnonzero(item_topic == t) for t in range(n_topics)]
    for m in members:
        ranks = rng.permutation(len(m)) + 1
        pop[m] = ranks ** (-cfg.popularity_exponent)

    # -- users and events -----------------------------------------------------------------------
    n_u = cfg.num_users
    k = min(cfg.interests_per_user, n_topics - 1)
    start = np.zeros((n_u, n_topics))
    end = np.zeros((n_u, n_topics))
    for u in range(n_u):
        chosen = rng.choice(n_topics, size=k + 1, replace=False)
        w = rng.dirichlet(np.ones(k) * 2.0)
        start[u, chosen[:k]] = w
        end[u, chosen[0]] = 0.5  # keeps the first interest
        end[u, chosen[k]] = 0.5  # and drifts to a new topic
    n_events = np.maximum(6, rng.lognormal(np.log(cfg.mean_events), 0.6, n_u).astype(np.int64))
    user = np.repeat(np.arange(n_u), n_events)
    phase = rng.random(len(user))  # position of each event in the user's life, 0 .. 1
    order = np.lexsort((phase, user))
    user, phase = user[order], phase[order]
    drift = phase[:, None] ** 2  # tastes move late in the history
    probs = (1 - drift) * start[user] + drift * end[user]
    topic = (probs.cumsum(axis=1) > rng.random(len(user))[:, None]).argmax(axis=1)
    item = np.empty(len(user), dtype=np.int64)
    for t, m in enumerate(members):
        sel = np.flatnonzero(topic == t)
        if len(m) == 0:
            topic[sel] = -1
            continue
        cdf = np.cumsum(pop[m]) / pop[m].sum()
        item[sel] = m[np.minimum(np.searchsorted(cdf, rng.random(len(sel))), len(m) - 1)]
    noisy = (rng.random(len(user)) < cfg.noise) | (topic < 0)
    item[noisy] = rng.integers(0, cfg.num_items, int(noisy.sum()))
    # one event per (user, item): keep the first
    key = user * cfg.num_items + item
    _, first = np.unique(key, return_index=True)
    first.sort()
    user, item, phase = user[first], item[first], phase[first]
    t0, span = 1_600_000_000, 365 * 24 * 3600
    user_offset = rng.random(n_u) * 0.3 * span
    timestamp = np.floor(t0 + user_offset[user] + phase * 0.7 * span)
    rating = np.clip(np.round(rng.normal(4.0, 0.8, len(user))), 1, 5)

    users = Vocabulary.from_values(np.array([f"u{u}" for u in range(n_u)]), name="user")
    items = Vocabulary.from_values(np.array([f"i{i}" for i in range(cfg.num_items)]), name="item")
    inter = Interactions(user, item, n_u, cfg.num_items, rating=rating, timestamp=timestamp)
    table = Table(cfg.num_items)
    table.add("title", np.array(titles, dtype=object), "text")
    table.add("description", np.array(descs, dtype=object), "text")
    table.add("category", np.array(cats, dtype=object), "categorical")
    tag_arr = np.empty(cfg.num_items, dtype=object)
    tag_arr[:] = tags
    table.add("tags", tag_arr, "tags")
    table.add("price", np.array(prices), "numeric")
    ds = Dataset("synthetic", users, items, inter, item_table=table)
    ds.extras["item_topic"] = item_topic
    return ds
