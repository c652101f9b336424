"""Bundle signatures: checksums catch corruption, the HMAC signature catches tampering. Refusals go through the
real CLI (``python -m recembed.cli``: exit code 2, a message, no traceback) and the Python loader."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from test_serve_support import Server, bundle_of, fitted_run, workdir

from recembed.cli.main import cli
from recembed.serve.bundle import BundleError, load_bundle, verify_bundle
from recembed.serve.signing import KEY_ENV, SIGNATURE, SignatureError

KEY = "k" * 8 + "-test-signing-key-0123456789"
OTHER_KEY = "another-key-that-is-long-enough"


@lru_cache(maxsize=1)
def signed_bundle() -> Path:
    out = workdir() / "bundle-bpr-signed"
    res = CliRunner().invoke(cli, ["bundle", str(fitted_run("bpr")), "--out", str(out), "--sign", "--no-progress"],
                             env={KEY_ENV: KEY})
    assert res.exit_code == 0, res.output
    assert "signed (HMAC-SHA256)" in res.output
    return out


def _copy(src: Path, tmp_path: Path, name: str = "b") -> Path:
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def _edit_array_and_rechecksum(bundle: Path) -> None:
    """What a tamperer does: change item vectors in place, then write the new SHA-256 into the manifest."""
    target = bundle / "embeddings.safetensors"
    data = bytearray(target.read_bytes())
    data[-64:] = bytes(b ^ 0x5A for b in data[-64:])  # same size, other floats
    target.write_bytes(bytes(data))
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"]["embeddings.safetensors"]["sha256"] = hashlib.sha256(data).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _serve(bundle: Path, *extra: str, key: str | None) -> subprocess.CompletedProcess:
    """``recembed serve`` as a user runs it; refused bundles exit before the server listens."""
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    if key is not None:
        env[KEY_ENV] = key
    env.update({"RECEMBED_API_KEY": "x", "COLUMNS": "200"})
    return subprocess.run([sys.executable, "-m", "recembed.cli", "serve", str(bundle), "--port", "9", *extra],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def _refused(res: subprocess.CompletedProcess, *fragments: str) -> None:
    text = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr
    for fragment in fragments:
        assert fragment in text, (fragment, text)


def test_a_re_checksummed_array_passes_checksums_but_not_the_signature(tmp_path, monkeypatch) -> None:
    bundle = _copy(signed_bundle(), tmp_path)
    _edit_array_and_rechecksum(bundle)
    monkeypatch.delenv(KEY_ENV, raising=False)
    verify_bundle(bundle)  # checksums alone: served (they protect against corruption, not tampering)
    _refused(_serve(bundle, "--require-signature", key=KEY), "signature mismatch", "manifest.json was changed",
             SIGNATURE)
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(SignatureError, match="signature mismatch"):
        load_bundle(bundle, require_signature=True)
    with pytest.raises(SignatureError, match="signature mismatch"):  # signed + key set: checked even if optional
        load_bundle(bundle)


def test_an_edited_manifest_is_refused(tmp_path, monkeypatch) -> None:
    bundle = _copy(signed_bundle(), tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    manifest["metrics"]["test"] = {"ndcg@10": 0.99}  # a nicer number, nothing else changed
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    _refused(_serve(bundle, "--require-signature", key=KEY), "signature mismatch")
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(SignatureError, match="signature mismatch"):
        verify_bundle(bundle, require_signature=True)


def test_a_correctly_signed_bundle_is_served(monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    assert load_bundle(signed_bundle(), require_signature=True).model.name == "bpr"
    with Server(signed_bundle(), "--require-signature") as url:
        assert httpx.get(f"{url}/v1/users/u3/recommendations", params={"k": 3}).json()["count"] == 3


def test_a_wrong_key_is_refused(monkeypatch) -> None:
    _refused(_serve(signed_bundle(), "--require-signature", key=OTHER_KEY), "signature mismatch", "another key")
    monkeypatch.setenv(KEY_ENV, OTHER_KEY)
    with pytest.raises(SignatureError, match="another key"):
        load_bundle(signed_bundle(), require_signature=True)


def test_an_unsigned_bundle_is_refused_under_require_signature(monkeypatch) -> None:
    _refused(_serve(bundle_of("bpr"), "--require-signature", key=KEY), "not signed", "--sign")
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(SignatureError, match="not signed"):
        load_bundle(bundle_of("bpr"), require_signature=True)
    assert load_bundle(bundle_of("bpr")).model.name == "bpr"  # not required: checksums only


def test_require_signature_without_the_key_is_refused(monkeypatch) -> None:
    _refused(_serve(signed_bundle(), "--require-signature", key=None), KEY_ENV)
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(SignatureError, match=KEY_ENV):
        load_bundle(signed_bundle(), require_signature=True)
    _refused(_serve(fitted_run("bpr"), "--require-signature", key=KEY), "needs a signed bundle")


def test_sign_without_a_key_or_with_a_short_one_is_exit_2(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    for key, fragment in ((None, f"set the environment variable {KEY_ENV}"), ("short", "at least 16")):
        run_env = env if key is None else {**env, KEY_ENV: key}
        res = subprocess.run([sys.executable, "-m", "recembed.cli", "bundle", str(fitted_run("bpr")), "--out",
                              str(tmp_path / "out"), "--sign"], env={**run_env, "COLUMNS": "200"},
                             capture_output=True, text=True, timeout=120, check=False)
        _refused(res, fragment)
        assert not (tmp_path / "out").exists()


def test_a_corrupted_file_is_still_a_checksum_error(tmp_path, monkeypatch) -> None:
    bundle = _copy(signed_bundle(), tmp_path)
    target = bundle / "history.safetensors"
    target.write_bytes(target.read_bytes()[:-10])  # truncated, manifest untouched: the signature still matches
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(BundleError, match="checksum mismatch") as err:
        load_bundle(bundle, require_signature=True)
    assert not isinstance(err.value, SignatureError) and "truncated" in str(err.value)


def test_storing_an_index_in_a_signed_bundle_signs_it_again(tmp_path, monkeypatch) -> None:
    bundle = _copy(signed_bundle(), tmp_path)
    monkeypatch.delenv(KEY_ENV, raising=False)
    res = CliRunner().invoke(cli, ["index", "build", str(bundle), "--kind", "flat", "--queries", "20", "--save",
                                   "--no-progress"])
    assert res.exit_code != 0 and "re-signing a signed bundle" in str(res.exception) and KEY_ENV in str(res.exception)
    res = CliRunner().invoke(cli, ["index", "build", str(bundle), "--kind", "flat", "--queries", "20", "--save",
                                   "--no-progress"], env={KEY_ENV: KEY})
    assert res.exit_code == 0, res.output
    monkeypatch.setenv(KEY_ENV, KEY)
    assert load_bundle(bundle, require_signature=True).index_meta["kind"] == "flat"
