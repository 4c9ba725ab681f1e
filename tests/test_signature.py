"""Signature maths against Zoom's published and computed vectors (../shared/zoom/NOTES.md)."""

import pytest

from integrations.zoom.signature import (
    ZoomSignatureError,
    encrypted_token,
    is_stale,
    sign,
    url_validation_response,
    verify_signature,
)

VECTOR_BODY = (
    b'{"event":"session.started","payload":{"account_id":"{ACCOUNT_ID}","object":'
    b'{"start_time":"2022-07-27T16:56:34Z","id":"{SESSION_ID}"}},"event_ts":1658940994914}'
)
VECTOR_SIGNATURE = "v0=96e8a131e9983d4bc96627eee7c67f9506d0aeb8f767260a822fb3f2abe703d5"


def test_sign_matches_the_notes_vector():
    assert sign(VECTOR_BODY, timestamp="1658940994", secret="secretValueTest") == VECTOR_SIGNATURE


def test_verify_accepts_the_vector():
    verify_signature(VECTOR_BODY, timestamp="1658940994", signature=VECTOR_SIGNATURE, secret="secretValueTest")


@pytest.mark.parametrize(
    "body, timestamp, signature, secret, message",
    [
        (VECTOR_BODY + b" ", "1658940994", VECTOR_SIGNATURE, "secretValueTest", "does not match"),
        (VECTOR_BODY, "1658940995", VECTOR_SIGNATURE, "secretValueTest", "does not match"),
        (VECTOR_BODY, "1658940994", VECTOR_SIGNATURE, "otherSecret", "does not match"),
        (VECTOR_BODY, None, VECTOR_SIGNATURE, "secretValueTest", "timestamp"),
        (VECTOR_BODY, "1658940994", None, "secretValueTest", "x-zm-signature"),
        (VECTOR_BODY, "1658940994", "v0=zz\u00e9", "secretValueTest", "does not match"),
    ],
)
def test_verify_raises_on_any_mismatch(body, timestamp, signature, secret, message):
    with pytest.raises(ZoomSignatureError, match=message):
        verify_signature(body, timestamp=timestamp, signature=signature, secret=secret)


def test_url_validation_published_vector():
    token = "qgg8vlvZRS6UYooatFL8Aw"
    expected = "70c1f2e2e6ca2d39297490d1f9142c7d701415ea8e6151f6562a08fa657a40ff"
    assert encrypted_token(token, secret="secretValueTest") == expected
    assert url_validation_response(token, secret="secretValueTest") == {"plainToken": token, "encryptedToken": expected}


@pytest.mark.parametrize(
    "timestamp, stale",
    [("1000", False), ("1300", False), ("700", False), ("1301", True), ("699", True), ("soon", True), ("", True)],
)
def test_is_stale_both_directions(timestamp, stale):
    assert is_stale(timestamp, now=1000, tolerance_seconds=300) is stale
