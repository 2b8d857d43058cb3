"""The Files API over an S3-compatible blob store (`OPENMA_BLOB_URL=s3://…`): a second
`openma serve` whose blobs live in a bucket of a real S3 server (moto's, started here),
driven with the SDK; the bucket is inspected directly with boto3."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import boto3
import httpx2
import pytest

from conftest import make_client, start_server

BUCKET = "openma-files"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    moto = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx2.get(endpoint, timeout=1.0)
            break
        except httpx2.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError("moto_server did not start")
            time.sleep(0.2)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    proc.kill()
    proc.wait()
    log.close()


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory, s3):
    endpoint, _ = s3
    env = {"OPENMA_BLOB_URL": f"s3://{BUCKET}?endpoint={endpoint}&region=us-east-1", **CREDS}
    srv = start_server(tmp_path_factory.mktemp("openma-s3") / "data", env=env)
    yield srv
    srv.stop()


def _keys(s3_client) -> list[str]:
    return [o["Key"] for o in s3_client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_health_reports_the_bucket(s3_server):
    health = httpx2.get(f"{s3_server.base_url}/health").json()
    assert health["status"] == "ok" and health["backends"]["blobs"].startswith(f"s3://{BUCKET}")


def test_upload_lands_in_the_bucket_and_downloads_back(s3_server, s3):
    _, bucket = s3
    client = make_client(s3_server)
    data = bytes(range(256)) * (12 * 4096 + 3)  # ~12 MiB: several multipart parts
    f = client.beta.files.upload(file=("big.bin", io.BytesIO(data), "application/octet-stream"))
    assert f.size_bytes == len(data)
    keys = [k for k in _keys(bucket) if k.startswith("files/")]
    assert len(keys) == 1
    obj = bucket.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read()
    assert obj == data
    assert client.beta.files.download(f.id).read() == data
    assert not (s3_server.data_dir / "blobs" / "files").exists(), "nothing is written to the local blob dir"
    client.beta.files.delete(f.id)
    assert [k for k in _keys(bucket) if k.startswith("files/")] == []
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.download(f.id)


def test_a_refused_upload_leaves_no_object(s3_server, s3):
    _, bucket = s3
    client = make_client(s3_server)
    before = _keys(bucket)
    with pytest.raises(anthropic.BadRequestError):
        client.beta.files.upload(file=("x.txt", io.BytesIO(b"x" * 100), "text/plain"), expires_in_seconds=5)
    assert _keys(bucket) == before
    uploads = bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert uploads == [], "no multipart upload is left open"
