from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tasks.clean.pii import PiiConfig, RedactPii, is_public_ip
from tasks.clean.steps import CleanPipeline, Document


def test_emails_are_replaced_but_reserved_example_domains_kept() -> None:
    redact = RedactPii(PiiConfig())
    text = "Write to Jane.Doe+news@mail.co.uk, or docs@python.org. Example: user@example.com, a@b.test"
    assert redact.fix(text) == (
        "Write to email@example.com, or email@example.com. Example: user@example.com, a@b.test"
    )
    assert redact.counts == {"pii_email": 2, "pii_ip": 0}


def test_public_ipv4_and_ipv6_are_replaced_with_documentation_addresses() -> None:
    redact = RedactPii(PiiConfig())
    text = "Client 8.8.8.8 hit http://93.184.216.34:8080/x from [2607:f8b0:4005:80a::200e]:443 and 2001:4860::8888."
    assert redact.fix(text) == (
        "Client 192.0.2.1 hit http://192.0.2.1:8080/x from [2001:db8::1]:443 and 2001:db8::1."
    )
    assert redact.counts == {"pii_email": 0, "pii_ip": 4}


def test_addresses_written_against_cjk_text_or_with_accented_local_parts_are_replaced() -> None:
    redact = RedactPii(PiiConfig())
    text = "連絡先はtaro.yamada@gmail.comまで。IPは8.8.8.8です，IPv6は2001:4860:4860::8888。Kontakt: müller@gmail.com"
    assert redact.fix(text) == "連絡先はemail@example.comまで。IPは192.0.2.1です，IPv6は2001:db8::1。Kontakt: email@example.com"
    assert redact.counts == {"pii_email": 2, "pii_ip": 2}


@pytest.mark.parametrize("text", [
    "Python 3.11.2.1 and version 1.2.3.4 and Thunderbird/2.0.0.6",  # versions, not addresses
    "octets 999.1.1.1 and 1.2.3.4.5 and 1.0.0.127.in-addr.arpa",  # not an address / part of a longer name
    "127.0.0.1, 0.0.0.0, 10.1.2.3, 192.168.1.1, 169.254.0.1, 192.0.2.44",  # loopback, private, documentation
    "::1, fe80::1, 2001:db8::5, at 12:30:45, MAC 00:1a:2b:3c:4d:5e, std::vector, a::b",
    "user@localhost, @decorator, a @ b.com",
])
def test_non_personal_look_alikes_are_left_alone(text: str) -> None:
    redact = RedactPii(PiiConfig())
    assert redact.fix(text) == text
    assert redact.counts.total() == 0


def test_only_the_chosen_kinds_are_redacted_and_disabled_changes_nothing() -> None:
    text = "mail bob@corp.com from 8.8.4.4"
    assert RedactPii(PiiConfig(ip_addresses=False)).fix(text) == "mail email@example.com from 8.8.4.4"
    assert RedactPii(PiiConfig(emails=False, ipv4_replacement="<IP>")).fix(text) == "mail bob@corp.com from <IP>"
    assert RedactPii(PiiConfig(enabled=False)).fix(text) == text


def test_redaction_is_idempotent_and_replacements_that_look_personal_are_refused() -> None:
    redact = RedactPii(PiiConfig())
    once = redact.fix("x@y.org 1.1.1.1 2a00:1450::1")
    assert RedactPii(PiiConfig()).fix(once) == once
    with pytest.raises(ValidationError) as error:
        PiiConfig(email_replacement="a@b.com", ipv4_replacement="8.8.8.8", ipv6_replacement="2001:4860::1")
    message = str(error.value)
    assert all(field in message for field in ("email_replacement", "ipv4_replacement", "ipv6_replacement"))


def test_is_public_ip() -> None:
    assert is_public_ip("1.1.1.1") and is_public_ip("2606:4700::1111")
    assert not any(map(is_public_ip, ["10.0.0.1", "::1", "dead::beef", "256.1.1.1", "1.2.3"]))


def test_runs_as_a_step_of_the_clean_pipeline_on_text_and_title() -> None:
    redact = RedactPii(PiiConfig())
    doc = Document(url="u", source="local", title="from 8.8.8.8", text="ask me@home.net",
                   fetched_at=datetime(2024, 1, 1, tzinfo=UTC))
    (cleaned,) = CleanPipeline([redact]).run([doc])
    assert (cleaned.title, cleaned.text) == ("from 192.0.2.1", "ask email@example.com")
    assert redact.counts == {"pii_email": 1, "pii_ip": 1}
