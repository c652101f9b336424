"""Hyperparameter search (``recembed tune``) on Optuna.

:mod:`.space` declares search spaces (imported by the model configs, so it imports no Optuna); :mod:`.study`
opens, resumes and runs a study; :mod:`.objectives` fits one trial of a model and re-fits the best;
:mod:`.report` and :mod:`.plots` write what a study found.
"""
