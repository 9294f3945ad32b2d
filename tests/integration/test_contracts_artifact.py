"""``make contracts`` builds what another team consumes: the wheel and a descriptor set.

Every event names its schema as ``urn:zerocontact:contracts:<version>:<message>``
(``ce_dataschema``); this checks that the artifacts of that version exist under those names
and that the descriptor set resolves every message a record's ``ce_dataschema`` can name
(each cataloged topic's value), so a reader in any language can decode what we publish.
"""

from __future__ import annotations

import subprocess
import tomllib
import zipfile
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool

from zerocontact.platform.kafka.cloudevents import (
    contracts_version,
    dataschema_for,
    parse_dataschema,
)
from zerocontact.platform.topics import RAW_BYTES, load_catalog

ROOT = Path(__file__).resolve().parents[2]


def test_make_contracts_builds_the_wheel_and_descriptor_set_of_the_version_events_name(
    tmp_path: Path,
) -> None:
    project = tomllib.loads((ROOT / "libs/contracts/pyproject.toml").read_text())["project"]
    version = project["version"]
    assert contracts_version() == version  # what ce_dataschema says is what gets built

    built = subprocess.run(
        ["make", "-s", "contracts", f"DIST={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr

    wheel = tmp_path / f"zerocontact_contracts-{version}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"zerocontact/loan/v1/events_pb2.py", "zerocontact/loan/v1/events_pb2.pyi"} <= names

    files = descriptor_pb2.FileDescriptorSet.FromString(
        (tmp_path / f"zerocontact-contracts-{version}.binpb").read_bytes()
    )
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:  # in dependency order, imports included
        pool.Add(file)
    for topic in load_catalog():
        if topic.value == RAW_BYTES:
            continue
        release, message = parse_dataschema(dataschema_for(topic.value))
        assert release == version
        assert pool.FindMessageTypeByName(message).full_name == topic.value
    # Comments travel with it (source info), for documentation generators.
    loan = next(f for f in files.file if f.name == "zerocontact/loan/v1/events.proto")
    assert any(loc.leading_comments for loc in loan.source_code_info.location)
