"""The explicit table of model names (lower-case paper names, as on the CLI) -> import paths.

No discovery by naming convention: a model is available when it is listed here (a test checks
that every entry imports and that its class carries the same name).
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError

MODELS: dict[str, str] = {
    "pop": "recembed.models.pop:Pop",
    "random": "recembed.models.pop:Random",
    "itemknn": "recembed.models.itemknn:ItemKNN",
    "ease": "recembed.models.ease:EASE",
    "gfcf": "recembed.models.gfcf:GFCF",
    "bspm": "recembed.models.bspm:BSPM",
    "bpr": "recembed.models.bpr:BPR",
    "multvae": "recembed.models.multvae:MultVAE",
    "mmultvae": "recembed.models.mmultvae:MMultVAE",
    "directau": "recembed.models.directau:DirectAU",
    "lightgcn": "recembed.models.lightgcn:LightGCN",
    "simgcl": "recembed.models.simgcl:SimGCL",
    "xsimgcl": "recembed.models.xsimgcl:XSimGCL",
    "vbpr": "recembed.models.vbpr:VBPR",
    "bm3": "recembed.models.bm3:BM3",
    "cease": "recembed.models.cease:CEASE",
    "freedom": "recembed.models.freedom:FREEDOM",
    "mgcn": "recembed.models.mgcn:MGCN",
    "alpharec": "recembed.models.alpharec:AlphaRec",
    "sasrec": "recembed.models.sasrec:SASRec",
    "bert4rec": "recembed.models.bert4rec:BERT4Rec",
    "gru4rec": "recembed.models.gru4rec:GRU4Rec",
    "unisrec": "recembed.models.unisrec:UniSRec",
    "tiger": "recembed.models.tiger:TIGER",
    "ensemble": "recembed.models.ensemble:Ensemble",
}


def model_class(name: str) -> type:
    """The class registered under ``name``."""
    try:
        path = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {sorted(MODELS)}") from None
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
