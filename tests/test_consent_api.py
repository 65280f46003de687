"""The consent API over real HTTP on localhost: holders upload documents they signed on their side,
see only their own subjects, and cannot act for anyone else's. The service's real router, auth and
error handler run in uvicorn (no Ray needed for these routes)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI

from consent_helpers import MEGAMIND
from serve_helpers import free_port
from serving.auth import key_digest
from vfx.consent.keys import generate_key, load_public_key_text

HOLDERS = ("ada", "bob")


def vfx(home: Path, *args: str) -> str:
    env = {"VFX_HOME": str(home), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "vfx.cli", *args], capture_output=True, text=True, env=env,
                            cwd=Path(__file__).resolve().parents[1], timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from serving.app import VfxError, require, vfx_error
    from serving.auth import Keys
    from serving.consent_api import consent_router

    root = tmp_path_factory.mktemp("consent-api")
    tokens, entries = {}, []
    for name in HOLDERS:
        generate_key(root / f"{name}.key")  # on the holder's machine; the service only learns the .pub
        tokens[name] = f"test-{name}-token"
        entries.append({"name": name, "role": "rights_holder", "sha256": key_digest(tokens[name]),
                        "public_key": load_public_key_text(str(root / f"{name}.key.pub"))})
    generate_key(root / "server-held.key")
    tokens["carol"] = "test-carol-token"  # convenience mode: the service holds carol's key
    entries.append({"name": "carol", "role": "rights_holder", "sha256": key_digest(tokens["carol"]),
                    "signing_key": str(root / "server-held.key")})
    tokens["admin"] = "test-admin-token"
    entries.append({"name": "admin", "role": "admin", "sha256": key_digest(tokens["admin"])})
    (root / "keys.yaml").write_text(yaml.safe_dump({"keys": entries}))
    app = FastAPI()
    app.include_router(consent_router(require))
    app.add_exception_handler(VfxError, vfx_error)
    app.state.keys = Keys(str(root / "keys.yaml"))
    app.state.consent_db = f"sqlite:///{root / 'consent.db'}"
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield root, f"http://127.0.0.1:{port}", tokens
    server.should_exit = True
    thread.join(timeout=10)


def client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def signed(path: Path) -> dict:
    return json.loads(path.read_text())


def test_holders_upload_signed_documents_and_see_only_their_own_subjects(service) -> None:
    root, url, tokens = service
    home = root / "holder-home"
    home.mkdir()
    vfx(home, "consent", "enroll", "megamind", "--from", str(MEGAMIND), "--frames", "30-55", "--step", "5",
        "--key", str(root / "ada.key"), "-o", str(root / "enrol.json"))
    with client(url, tokens["ada"]) as ada, client(url, tokens["bob"]) as bob, client(url, tokens["admin"]) as admin:
        refused = bob.post("/v1/consent/subjects", json=signed(root / "enrol.json"))
        assert refused.status_code == 422 and "not by your key" in refused.json()["detail"]
        enrolled = ada.post("/v1/consent/subjects", json=signed(root / "enrol.json"))
        assert enrolled.status_code == 201, enrolled.text
        digest = enrolled.json()["digest"]
        assert ada.get("/v1/consent/subjects").json() == [{"subject": "megamind", "references": 6}]
        assert bob.get("/v1/consent/subjects").json() == []
        assert bob.get("/v1/consent/subjects/megamind").status_code == 404

        vfx(home, "consent", "grant", "megamind", "--project", "doc-1", "--ops", "rejuvenate", "--until", "2099-12-31",
            "--digest", digest, "--key", str(root / "bob.key"), "-o", str(root / "bob-grant.json"))
        hijack = bob.post("/v1/consent/grants", json=signed(root / "bob-grant.json"))
        assert hijack.status_code == 422 and "not an authority of 'megamind'" in hijack.json()["detail"]

        vfx(home, "consent", "sign-grant", "megamind", "--project", "doc-1", "--ops", "rejuvenate", "--until",
            "2099-12-31", "--digest", digest, "--key", str(root / "ada.key"), "-o", str(root / "grant.json"))
        issued = ada.post("/v1/consent/grants", json=signed(root / "grant.json"))
        assert issued.status_code == 201, issued.text
        grant_id = issued.json()["grant_id"]
        assert issued.json()["by_authority"] and issued.json()["state"] == "active"
        assert [g["grant_id"] for g in ada.get("/v1/consent/grants").json()] == [grant_id]
        assert bob.get("/v1/consent/grants").json() == []
        assert bob.get(f"/v1/consent/grants/{grant_id}").status_code == 404
        assert ada.post("/v1/consent/grants", json={"subject": "megamind", "project": "p", "ops": ["lipsync"],
                                                    "until": "2099-12-31"}).status_code == 403  # no server-held key

        vfx(home, "consent", "authorize", "megamind", "--key", str(root / "ada.key"), "--add",
            str(root / "bob.key.pub"), "-o", str(root / "delegate.json"))
        delegated = ada.post("/v1/consent/subjects/megamind/authorities", json=signed(root / "delegate.json"))
        assert delegated.status_code == 200, delegated.text
        assert len(delegated.json()["authorities"]) == 2
        assert bob.get("/v1/consent/subjects").json() == [{"subject": "megamind", "references": 6}]

        vfx(home, "consent", "revoke", grant_id, "--subject", "megamind", "--reason", "actor withdrew",
            "--key", str(root / "bob.key"), "-o", str(root / "revoke.json"))
        revoked = bob.post(f"/v1/consent/grants/{grant_id}/revoke", json=signed(root / "revoke.json"))
        assert revoked.status_code == 200, revoked.text
        assert ada.get(f"/v1/consent/grants/{grant_id}").json()["revocation"]["reason"] == "actor withdrew"

        assert ada.get("/v1/consent/verify").status_code == 403
        report = admin.get("/v1/consent/verify").json()
        assert report["ok"] and report["entries"] == 4, report


def test_convenience_mode_signs_with_the_server_held_key(service) -> None:
    root, url, tokens = service
    from vfx.consent.keys import load_private_key
    from vfx.consent.store import ConsentStore
    from vfx.consent.subjects import enroll
    from consent_helpers import faces_of_test_frame

    db = f"sqlite:///{root / 'consent.db'}"
    enroll(ConsentStore(db), "minion", faces_of_test_frame()[1][1][None], "frame 80",
           key=load_private_key(root / "server-held.key"))
    with client(url, tokens["carol"]) as carol, client(url, tokens["ada"]) as ada:
        assert carol.get("/v1/consent/subjects").json() == [{"subject": "minion", "references": 1}]
        issued = carol.post("/v1/consent/grants", json={"subject": "minion", "project": "p", "ops": ["lipsync"],
                                                        "until": "2099-12-31"})
        assert issued.status_code == 201, issued.text
        other = carol.post("/v1/consent/grants", json={"subject": "megamind", "project": "p", "ops": ["lipsync"],
                                                       "until": "2099-12-31"})
        assert other.status_code == 422 and "not an authority of 'megamind'" in other.json()["detail"]
        assert ada.post(f"/v1/consent/grants/{issued.json()['grant_id']}/revoke", json={}).status_code == 404
        assert carol.post(f"/v1/consent/grants/{issued.json()['grant_id']}/revoke", json={"reason": "x"}).status_code == 200
