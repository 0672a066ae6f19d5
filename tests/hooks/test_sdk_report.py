"""The per-SDK report of ``tests/run.sh --latest`` says when an SDK was held back."""

from __future__ import annotations

import sdk_report  # tests/sdk_report.py: pytest puts tests/ on sys.path (rootdir conftest)

PIP_OUTPUT = (
    "WARNING: Location 'file:///opt/pypi/simple/langchain-core/' is ignored\n"
    "langchain-core (1.8.4)\n"
    "Available versions: 1.8.4, 1.8.3, 1.8.2\n"
    "  INSTALLED: 1.8.3\n"
    "  LATEST:    1.8.4\n"
)


def test_the_newest_listed_version_is_read_from_pips_output() -> None:
    assert sdk_report.newest_listed(PIP_OUTPUT) == "1.8.4"
    assert sdk_report.newest_listed("ERROR: No matching distribution found for nothing\n") is None


def test_a_row_notes_an_sdk_older_than_the_index_lists() -> None:
    assert sdk_report.held_back("1.8.3", "1.8.4") == (
        " (newest listed 1.8.4, held back by the resolver)"
    )


def test_a_row_says_nothing_when_newest_or_when_the_index_is_silent() -> None:
    assert sdk_report.held_back("1.8.4", "1.8.4") == ""
    assert sdk_report.held_back("1.8.3", None) == ""
    assert sdk_report.held_back("not installed", "1.8.4") == ""


def test_tests_belong_to_the_sdk_their_module_or_table_names() -> None:
    assert sdk_report.owner_of("tests/hooks/test_langchain_usage.py::test_x") == "langchain-core"
    assert sdk_report.owner_of("tests/hooks/test_langchain.py::test_x") == "langchain-core"
    assert sdk_report.owner_of("tests/hooks/test_conformance.py::test_x[openai:chat]") == "openai"
    assert sdk_report.owner_of("tests/hooks/test_sdk_report.py::test_x") == "other"


def test_post_call_tests_count_under_their_sdk() -> None:
    owners = {
        "tests/hooks/test_fal_usage.py::test_x": "fal-client",
        "tests/hooks/test_vertexai_usage.py::test_x": "google-cloud-aiplatform",
        "tests/hooks/test_usage_litellm.py::test_x": "litellm",
        "tests/hooks/test_usage.py::test_genai_stream_settles": "google-genai",
        "tests/hooks/test_usage.py::test_bedrock_converse_settles": "boto3",
        "tests/hooks/test_usage.py::test_a_failing_reader_settles_none": "other",
        "tests/hooks/test_google_genai.py::test_openai_style_call": "google-genai",
    }
    assert {nodeid: sdk_report.owner_of(nodeid) for nodeid in owners} == owners


def test_an_sdk_not_asked_for_still_gets_a_row_when_its_tests_ran() -> None:
    tally = sdk_report.Tally()
    tally.outcomes["langchain-core"]["failed"] += 1
    tally.outcomes["google-cloud-aiplatform"]["passed"] += 1
    assert sdk_report.reported(["google-cloud-aiplatform"], tally) == [
        "google-cloud-aiplatform",
        "langchain-core",
        "other",
    ]
