"""The explicit table of model names (lower-case paper names, as on the CLI) -> import paths.

No discovery by naming convention: a model is available when it is listed here (a test checks
that every entry imports and that its class carries the same name).
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError, did_you_mean

MODELS: dict[str, str] = {
    "pop": "recembed.models.cf.pop:Pop",
    "random": "recembed.models.cf.pop:Random",
    "itemknn": "recembed.models.cf.itemknn:ItemKNN",
    "ease": "recembed.models.cf.ease:EASE",
    "gfcf": "recembed.models.cf.gfcf:GFCF",
    "bspm": "recembed.models.cf.bspm:BSPM",
    "bpr": "recembed.models.cf.bpr:BPR",
    "multvae": "recembed.models.cf.multvae:MultVAE",
    "mmultvae": "recembed.models.content.mmultvae:MMultVAE",
    "directau": "recembed.models.cf.directau:DirectAU",
    "lightgcn": "recembed.models.cf.lightgcn:LightGCN",
    "simgcl": "recembed.models.cf.simgcl:SimGCL",
    "xsimgcl": "recembed.models.cf.xsimgcl:XSimGCL",
    "vbpr": "recembed.models.content.vbpr:VBPR",
    "bm3": "recembed.models.content.bm3:BM3",
    "cease": "recembed.models.content.cease:CEASE",
    "freedom": "recembed.models.content.freedom:FREEDOM",
    "mgcn": "recembed.models.content.mgcn:MGCN",
    "alpharec": "recembed.models.content.alpharec:AlphaRec",
    "queryue": "recembed.models.content.queryue:QueryUE",
    "sasrec": "recembed.models.sequential.sasrec:SASRec",
    "comirec": "recembed.models.sequential.comirec:ComiRec",
    "bert4rec": "recembed.models.sequential.bert4rec:BERT4Rec",
    "gru4rec": "recembed.models.sequential.gru4rec:GRU4Rec",
    "unisrec": "recembed.models.sequential.unisrec:UniSRec",
    "sgns": "recembed.models.sequential.sgns:SGNS",
    "tiger": "recembed.models.generative.tiger:TIGER",
    "ensemble": "recembed.models.ensemble:Ensemble",
}

#: the ranking stage (CTR models fitted on a CTR dataset: ``recembed fit deepfm --data ml-100k-ctr``)
RANKERS: dict[str, str] = {
    "lr": "recembed.models.ranking.lr:LR",
    "fm": "recembed.models.ranking.fm:FM",
    "deepfm": "recembed.models.ranking.deepfm:DeepFM",
    "dcnv2": "recembed.models.ranking.dcnv2:DCNv2",
    "autoint": "recembed.models.ranking.autoint:AutoInt",
    "masknet": "recembed.models.ranking.masknet:MaskNet",
    "finalmlp": "recembed.models.ranking.finalmlp:FinalMLP",
    "din": "recembed.models.ranking.din:DIN",
    "qin": "recembed.models.ranking.qin:QIN",
}

#: the session task (anonymous sessions scored from the prefix: ``recembed fit vsknn --data diginetica-session``)
SESSION_MODELS: dict[str, str] = {
    "sknn": "recembed.models.session.sknn:SKNN",
    "vsknn": "recembed.models.session.vsknn:VSKNN",
    "stan": "recembed.models.session.stan:STAN",
}


#: models made from a fitted run, not fitted from data (loadable, not ``recembed fit``-able)
DERIVED: dict[str, str] = {
    "compressed": "recembed.compact.model:CompressedEmbedding",  # recembed compress RUN --method ...
}


def is_ranker(name: str) -> bool:
    return name in RANKERS


def is_session_model(name: str) -> bool:
    return name in SESSION_MODELS


def model_class(name: str) -> type:
    """The class registered under ``name``."""
    try:
        path = MODELS.get(name) or DERIVED.get(name) or SESSION_MODELS.get(name) or RANKERS[name]
    except KeyError:
        known = {**MODELS, **RANKERS, **SESSION_MODELS}
        raise ConfigError(f"unknown model {name!r}{did_you_mean(name, known)}; available: {sorted(known)}") from None
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
