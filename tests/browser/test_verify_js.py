"""The browser's proof-bundle verifier (dashboards/static/verify.js) in Debian's chromium, loaded
by a page of the app under the app's own CSP: the conformance vectors give the Python answers,
every bundle of tests/bundle_corpus.py gets the verdict `verify_bundle` gives (the same checks
failing), and a reading not yet sealed or not yet witnessed is pending."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest
from playwright.sync_api import Page, sync_playwright

from dashboards.app import create_app
from dashboards.security_headers import CONTENT_SECURITY_POLICY
from devices.keys import DeviceSigner
from devices.publisher import readings_topic
from devices.reading import _cbor_number
from devices.registry import DeviceRegistry
from ingest.mqtt_source import InboundMessage
from ledger.cosignature import Cosigner
from ledger.ledger import LedgerReader
from ledger.merkle import VerificationError, verify_inclusion
from ledger.note import NoteError, NoteVerifier, open_note
from ledger.verifier import Report, verify_bundle
from tests.api_access import ward_headers
from tests.browser.test_dashboard_page import CHROMIUM_ARGS
from tests.browser.test_patient_page import watch
from tests.bundle_corpus import Case, cases
from tests.populated import populate
from tests.stack import now_ms, signed, vitals
from vitaltrail.mosquitto import free_port, wait_for_port
from vitaltrail.runtime import build_ingest, data_sources
from vitaltrail.services import http_server
from vitaltrail.settings import Settings

pytestmark = pytest.mark.browser

VECTORS = Path(__file__).parents[1] / "vectors"
ALL_CHECKS = {
    "bundle format",
    "checkpoint signature",
    "witness cosignatures",
    "device key",
    "device signature",
    "inclusion proof",
}


@dataclass
class Served:
    url: str
    settings: Settings
    page: Page
    problems: list[str]  # console errors and page errors (a CSP violation is one)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The app on a populated ledger (two blocks), and chromium on its sign-in page: a page of
    the app without scripts of its own, whose CSP the module has to live with."""
    work = tmp_path_factory.mktemp("verify-js")
    settings = populate(work / "data", patients=3, readings=5, blocks=2)
    port = free_port()
    server = http_server(create_app(data_sources(settings)), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    url = f"http://127.0.0.1:{port}"
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_page()
        problems = watch(page)
        response = page.goto(f"{url}/sign-in")
        assert response is not None
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        yield Served(url, settings, page, problems)
        browser.close()
    server.should_exit = True
    thread.join(10)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


INCLUSION = """async (vectors) => {
  const tlog = await import('/static/tlog.js');
  const bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const out = [];
  for (const v of vectors) {
    try {
      await tlog.verifyInclusion(bytes(v.leafHash), v.leafIdx, v.treeSize, v.proof.map(bytes),
                                 bytes(v.root));
      out.push('ok');
    } catch (error) {
      out.push(error.name);
    }
  }
  return out;
}"""

NOTE = """async ({vkey, notes}) => {
  const tlog = await import('/static/tlog.js');
  const key = await tlog.parseVerifierKey(vkey);
  const out = [];
  for (const note of notes) {
    try {
      const [opened, signedBy] = await tlog.openNote(note, [key]);
      out.push({text: opened.text, signers: signedBy.map((k) => k.name)});
    } catch (error) {
      out.push({error: error.name});
    }
  }
  return out;
}"""

ED25519 = """async ([key, message, signature]) => {
  const { verifyEd25519 } = await import('/static/ed25519.js');
  const bytes = (h) => Uint8Array.from(h.match(/../g) || [], (b) => parseInt(b, 16));
  const flipped = bytes(signature);
  flipped[0] ^= 1;
  return [await verifyEd25519(bytes(key), bytes(signature), bytes(message)),
          await verifyEd25519(bytes(key), flipped, bytes(message))];
}"""

BASE64 = """async (texts) => {
  const tlog = await import('/static/tlog.js');
  return texts.map((t) => {
    try {
      return btoa(String.fromCharCode(...tlog.decodeBase64(t, 'text')));
    } catch {
      return null;
    }
  });
}"""

FLOATS = """async (values) => {
  const cbor = await import('/static/cbor.js');
  const hex = (b) => [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return values.map((v) => hex(cbor.encode(typeof v === 'string' ? BigInt(v) : v)));
}"""

# RFC 8032 section 7.1, TEST 1: the empty message.
RFC8032 = (
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    "",
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
)


def _python_inclusion(vector: dict[str, Any]) -> str:
    decoded = [base64.b64decode(vector[k] or "") for k in ("leafHash", "root")]
    try:
        verify_inclusion(
            decoded[0],
            vector["leafIdx"],
            vector["treeSize"],
            [base64.b64decode(p) for p in vector["proof"] or []],
            decoded[1],
        )
    except VerificationError:
        return "VerificationError"
    return "ok"


def _python_base64(text: str) -> str | None:
    try:
        return b64(base64.b64decode(text, validate=True))
    except ValueError:
        return None


def test_the_conformance_vectors_give_the_python_answers(served: Served) -> None:
    page = served.page
    # WebCrypto Ed25519, which the module relies on: RFC 8032's first test vector
    assert page.evaluate(ED25519, list(RFC8032)) == [True, False]

    # RFC 9162 inclusion proofs (transparency-dev/merkle testdata), mutated ones included
    files = sorted((VECTORS / "rfc9162" / "inclusion").rglob("*.json"))
    vectors = [json.loads(f.read_text()) for f in files]
    for v in vectors:
        v["proof"] = v["proof"] or []
        v["leafHash"], v["root"] = v["leafHash"] or "", v["root"] or ""
    answers = page.evaluate(INCLUSION, vectors)
    expected = [_python_inclusion(v) for v in vectors]
    assert answers == expected
    assert expected == ["VerificationError" if v["wantErr"] else "ok" for v in vectors]
    assert len(vectors) > 90
    assert expected.count("ok") >= 5

    # the C2SP signed-note vector (golang.org/x/mod sumdb/note), and every changed byte
    vector = json.loads((VECTORS / "signed-note.json").read_text())
    signed_note, text = vector["signed_note"], vector["text"]
    sig_start = signed_note.rindex(" ") + 1
    notes = [signed_note]
    for pos in [0, 10, len(text) - 2, sig_start + 8, sig_start + 20, len(signed_note) - 3]:
        replacement = "A" if signed_note[pos] != "A" else "B"
        notes.append(signed_note[:pos] + replacement + signed_note[pos + 1 :])
    answers = page.evaluate(NOTE, {"vkey": vector["verifier_key"], "notes": notes})
    verifier = NoteVerifier.parse(vector["verifier_key"])
    for note, answer in zip(notes, answers, strict=True):
        try:
            opened, _ = open_note(note, [verifier])
        except NoteError:
            assert answer == {"error": "NoteError"}, note
        else:
            assert answer == {"text": opened.text, "signers": [verifier.name]}
    assert answers[0]["text"] == text

    # base64 exactly as Python's b64decode(validate=True) reads it (padding rules and all)
    texts = ["".join(t) for n in range(7) for t in itertools.product("AQ=/", repeat=n)]
    texts += ["QUJD\n", "QUJD\u00e9", "QU JD", "-_-_", "QR==", "QUJD==", "QUI==", "QQ=A="]
    assert page.evaluate(BASE64, texts) == [_python_base64(t) for t in texts]

    # numbers as the readings' deterministic CBOR writes them: an integer while exact, else
    # the shortest float that holds the value (cbor2, canonical; devices/reading.py)
    floats = [72.5, 36.6, 0.1, 1e-7, 2.0**-24, 2.0**-14, 1023.5, 65504.25, 2.0**53, 2.0**60]
    floats += [-(2.0**53), 2**53 - 1, -(2**53) + 1, -0.0, 3.4028234663852886e38, 1e300, -2.5]
    integers = [2**63 - 1, 2**64 - 1, -(2**64), -(2**53)]
    encoded = page.evaluate(FLOATS, [*floats, *(str(i) for i in integers)])
    python = [cbor2.dumps(_cbor_number(v), canonical=True).hex() for v in floats]
    python += [cbor2.dumps(i, canonical=True).hex() for i in integers]
    assert encoded == python
    assert served.problems == []


VERIFY = """async (cases) => {
  const { verifyBundle } = await import('/static/verify.js');
  const bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const out = [];
  for (const c of cases) {
    const doc = c.text ?? bytes(c.b64);
    const r = await verifyBundle(doc, c.keys);
    out.push({
      status: r.status, failed: r.failed, reason: r.reason,
      checks: r.checks.map((k) => [k.name, k.ok, k.detail]),
      reading: r.reading && JSON.stringify(r.reading, (_, v) => typeof v === 'bigint' ? `${v}` : v),
    });
  }
  return out;
}"""


def as_handed_over(case: Case) -> str | bytes:
    """The document as the page hands it to verify.js and the test to verify_bundle: text
    when it is UTF-8 (what fetch's response.text() gives), else bytes."""
    if not case.as_bytes:
        with contextlib.suppress(UnicodeDecodeError):
            return case.document.decode()
    return case.document


def _as_js(case: Case) -> dict[str, Any]:
    doc = as_handed_over(case)
    if isinstance(doc, str):
        return {"text": doc, "b64": None, "keys": case.keys()}
    return {"text": None, "b64": b64(doc), "keys": case.keys()}


def expected_status(report: Report) -> tuple[str, str | None]:
    """The status verify.js must give, and the check it must name, from verify_bundle's
    report: pending when the only failure is too few witness cosignatures."""
    failed = report.failed()
    if report.ok:
        return "verified", None
    awaiting = [
        c for c in failed if c.name == "witness cosignatures" and "policy needs" in c.detail
    ]
    broken = [c for c in failed if c not in awaiting]
    if not broken:
        return "pending", None
    return "failed", broken[0].name


def _reading_of(report: Report) -> dict[str, Any] | None:
    if report.reading is None:
        return None
    r = report.reading
    samples = [
        {"code": s.code, "unit": s.unit, "value": s.value, "time": s.time_ms} for s in r.samples
    ]
    battery = {} if r.battery_pct is None else {"battery": r.battery_pct}
    return {"device": r.device_id, "seq": r.seq, "samples": samples, **battery}


def _same_reading(js: str | None, python: dict[str, Any] | None) -> bool:
    if js is None or python is None:
        return js is None and python is None
    ours = json.loads(js)
    ours["seq"] = int(ours["seq"])
    for s in ours["samples"]:
        s["time"], s["value"] = int(s["time"]), float(s["value"])
    return bool(ours == python)


def test_every_bundle_gets_the_verdict_verify_bundle_gives(served: Served, tmp_path: Path) -> None:
    corpus = cases(served.settings, tmp_path)
    answers = served.page.evaluate(VERIFY, [_as_js(c) for c in corpus])
    mismatches, statuses, failed = [], [], set()
    for case, js in zip(corpus, answers, strict=True):
        report = verify_bundle(as_handed_over(case), case.policy)
        status, failing = expected_status(report)
        statuses.append(status)
        failed |= {c.name for c in report.failed()}
        python = [(c.name, c.ok) for c in report.checks]
        ours = [(name, ok) for name, ok, _ in js["checks"]]
        same = (js["status"], js["failed"], ours) == (status, failing, python)
        if not same or not _same_reading(js["reading"], _reading_of(report)):
            details = [c.detail for c in report.failed()]
            mismatches.append(f"{case.name}: python {python} {details}, js {js}")
        assert not any(detail.startswith("internal error") for _, _, detail in js["checks"])
    assert mismatches == []
    # the corpus makes every check fail somewhere, and gives each status several times
    assert failed == ALL_CHECKS
    assert min(statuses.count(s) for s in ("verified", "pending", "failed")) >= 4
    assert served.problems == []


PROOF = """async ({url, headers, keys}) => {
  const { verifyBundle } = await import('/static/verify.js');
  const response = await fetch(url, {headers});
  const bundle = response.status === 409 ? null : await response.text();
  const report = await verifyBundle(bundle, keys);
  return {http: response.status, status: report.status, reason: report.reason,
          checks: report.checks.map((c) => [c.name, c.ok])};
}"""

MISTAKES = """async (attempts) => {
  const { verifyBundle } = await import('/static/verify.js');
  const out = [];
  for (const keys of attempts) {
    try {
      await verifyBundle('{}', keys);
      out.push('answered');
    } catch (error) {
      out.push(error.name);
    }
  }
  return out;
}"""


def test_a_reading_not_yet_sealed_or_witnessed_is_pending(served: Served) -> None:
    settings = served.settings
    ledger_key = settings.ledger_key_path.with_suffix(".pub").read_text().strip()
    witness = Cosigner.generate("witness.test/w1")
    headers = ward_headers(settings, ["patient-0"])

    # a reading recorded after the last seal: the API has no bundle for it yet (409)
    signer = DeviceSigner.generate()
    registry = DeviceRegistry(settings.registry_path)
    registry.register("patient-0-spare", "patient-0", signer.key)
    registry.close()
    runtime = build_ingest(settings)
    message = signed("patient-0-spare", signer, 0, vitals(now_ms()))
    topic = readings_topic(settings.topic_root, "patient-0-spare")
    runtime.ingestor.pipeline.process([InboundMessage(topic, message, 0, 1, 0, 0)], now_ms())
    runtime.close()
    reader = LedgerReader(settings.ledger_path)
    last = reader.log.stored_size() - 1
    reader.close()
    unsealed = served.page.evaluate(
        PROOF,
        {
            "url": f"{served.url}/api/v1/readings/{last}/proof",
            "headers": headers,
            "keys": {"ledgerKey": ledger_key},
        },
    )
    assert unsealed == {
        "http": 409,
        "status": "pending",
        "reason": "not sealed in a block yet",
        "checks": [],
    }

    # a sealed reading, with a policy that wants a witness the checkpoint does not have yet
    sealed = served.page.evaluate(
        PROOF,
        {
            "url": f"{served.url}/api/v1/readings/3/proof",
            "headers": headers,
            "keys": {"ledgerKey": ledger_key, "witnessKeys": [str(witness.verifier)]},
        },
    )
    assert sealed["http"] == 200
    assert sealed["status"] == "pending"
    assert sealed["reason"] == (
        "not yet witnessed: 0 of the pinned witnesses cosigned (none); the policy needs 1"
    )
    assert sealed["checks"] == [
        ["checkpoint signature", True],
        ["witness cosignatures", False],
        ["device key", True],
        ["device signature", True],
        ["inclusion proof", True],
    ]

    # a mistake in the pinned keys is the page's, not a verdict on a bundle
    bad = served.page.evaluate(
        MISTAKES,
        [
            {"ledgerKey": "not-a-key"},
            {"ledgerKey": str(witness.verifier)},  # a witness key posing as the log's
            {"ledgerKey": ledger_key, "witnessKeys": [ledger_key]},  # and the other way round
            {"ledgerKey": ledger_key, "witnessKeys": [str(witness.verifier)], "quorum": 2},
            {"ledgerKey": ledger_key},
        ],
    )
    assert bad == ["TypeError", "TypeError", "TypeError", "RangeError", "answered"]
    assert served.problems == []
