"""`zerocontact gateway certs dev` keeps what is still valid (make up runs it on every start:
a gateway already running must keep trusting the CA it loaded) and renews on request."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from zerocontact.gateway import certs
from zerocontact.gateway.cli import app

FILES = ("ca.crt", "ca.key", "server.crt", "server.key", "shop-a.crt", "shop-a.key")


def _dev(out: Path, *extra: str) -> str:
    result = CliRunner().invoke(
        app, ["certs", "dev", "--partner", "shop-a", "--out", str(out), *extra]
    )
    assert result.exit_code == 0, result.output
    return result.output


def _contents(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in FILES}


def test_a_second_run_keeps_every_valid_certificate(tmp_path: Path) -> None:
    assert "issued ca, server, shop-a" in _dev(tmp_path)
    first = _contents(tmp_path)
    assert "issued nothing; kept 3" in _dev(tmp_path)
    assert _contents(tmp_path) == first


def test_a_new_partner_is_issued_from_the_kept_ca(tmp_path: Path) -> None:
    _dev(tmp_path)
    ca = (tmp_path / "ca.crt").read_bytes()
    result = CliRunner().invoke(
        app, ["certs", "dev", "--partner", "shop-a", "--partner", "bank-b", "--out", str(tmp_path)]
    )
    assert "issued bank-b" in result.output
    assert (tmp_path / "ca.crt").read_bytes() == ca
    ca_issued = certs.load(tmp_path, "ca")
    assert certs.still_valid(tmp_path, "bank-b", issuer=ca_issued) is not None


def test_a_certificate_of_another_ca_or_renew_is_issued_again(tmp_path: Path) -> None:
    _dev(tmp_path)
    other = certs.issue_ca("another CA")
    certs.issue_partner(other, "shop-a").write(tmp_path, "shop-a")
    assert "issued shop-a" in _dev(tmp_path)
    before = _contents(tmp_path)
    assert "issued ca, server, shop-a" in _dev(tmp_path, "--renew")
    after = _contents(tmp_path)
    assert all(before[name] != after[name] for name in FILES)
