"""What a certificate request names: valid DNS names, and a CSR that says the same."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from services.errors import DomainError, ErrorCode, invalid

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_NAMES = 500
CSR_MAX = 20_000
# 253 for the name, 2 for "*.", 1 for a final dot, some room for spaces around it.
DNS_NAME_INPUT_MAX = 260


def clean_dns_name(value: str, *, field: str, wildcard: bool) -> str:
    """A lower-case DNS name of at least two labels; a wildcard is `*.` and such a name."""
    if len(value) > DNS_NAME_INPUT_MAX:
        raise invalid(field, f"At most {DNS_NAME_INPUT_MAX} characters.")
    name = value.strip().lower().rstrip(".")
    body = name[2:] if wildcard and name.startswith("*.") else name
    if wildcard != name.startswith("*."):
        message = "A wildcard name looks like *.example.com." if wildcard else "Wildcard names go under wildcards."
        raise invalid(field, message)
    try:
        body = body.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise invalid(field, f"{value!r} is not a valid DNS name.") from exc
    labels = body.split(".")
    if len(body) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise invalid(field, f"{value!r} is not a valid DNS name.")
    return ("*." if wildcard else "") + body


@dataclass(frozen=True)
class RequestedNames:
    common_name: str
    additional_fqdns: list[str]
    wildcards: list[str]

    @property
    def all(self) -> set[str]:
        return {self.common_name, *self.additional_fqdns, *self.wildcards}

    @property
    def plain_count(self) -> int:
        return len({n for n in self.all if not n.startswith("*.")})

    @property
    def wildcard_count(self) -> int:
        return len({n for n in self.all if n.startswith("*.")})


def requested_names(common_name: str, additional_fqdns: list[str], wildcards: list[str]) -> RequestedNames:
    if len(additional_fqdns) + len(wildcards) > MAX_NAMES:
        raise invalid("additional_fqdns", f"At most {MAX_NAMES} names.")
    cn = clean_dns_name(common_name, field="common_name", wildcard=common_name.strip().startswith("*."))
    fqdns = [clean_dns_name(n, field=f"additional_fqdns.{i}", wildcard=False) for i, n in enumerate(additional_fqdns)]
    stars = [clean_dns_name(n, field=f"wildcards.{i}", wildcard=True) for i, n in enumerate(wildcards)]
    return RequestedNames(cn, list(dict.fromkeys(fqdns)), list(dict.fromkeys(stars)))


def check_allowance(names: RequestedNames, *, fqdns: int, wildcards: int) -> None:
    """The names must fit what the voucher pays for."""
    if names.plain_count > fqdns:
        raise DomainError(
            ErrorCode.ALLOWANCE_EXCEEDED,
            f"This voucher covers {fqdns} FQDN(s); the request names {names.plain_count}.",
            "additional_fqdns",
        )
    if names.wildcard_count > wildcards:
        raise DomainError(
            ErrorCode.ALLOWANCE_EXCEEDED,
            f"This voucher covers {wildcards} wildcard name(s); the request names {names.wildcard_count}.",
            "wildcards",
        )


def check_csr(pem: str, names: RequestedNames) -> str:
    """The CSR must parse, be signed by its key, and name exactly the requested names."""
    text = pem.strip()
    if len(text) > CSR_MAX:
        raise DomainError(ErrorCode.CSR_INVALID, f"At most {CSR_MAX} characters.", "csr")
    try:
        csr = x509.load_pem_x509_csr(text.encode())
    except ValueError as exc:
        raise DomainError(
            ErrorCode.CSR_INVALID, "The CSR is not a valid PEM certificate signing request.", "csr"
        ) from exc
    if not csr.is_signature_valid:
        raise DomainError(ErrorCode.CSR_INVALID, "The CSR's signature does not verify.", "csr")
    common_names = [str(a.value).lower() for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = {str(n).lower() for n in extension.value.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        sans = set()
    if common_names != [names.common_name]:
        raise DomainError(ErrorCode.CSR_MISMATCH, "The CSR's common name differs from the request's.", "csr")
    if (sans | {names.common_name}) != names.all:
        raise DomainError(ErrorCode.CSR_MISMATCH, "The CSR's names differ from the request's.", "csr")
    return text
