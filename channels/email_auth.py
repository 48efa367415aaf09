"""Who really sent a mail: the `From:` address proved, not claimed (DMARC's rule).

A mail's From is verified when DKIM or SPF passes for a domain aligned with the From domain:
- read from the `Authentication-Results` header (RFC 8601) of a trusted authserv-id, the
  desk's own MX, which removes such headers from outside before adding its own; only the
  topmost header of a trusted id is read;
- or checked here: DKIM signatures (dkimpy) and, when Guichet receives mail straight from the
  Internet, SPF for the connecting address (pyspf). Both ask DNS through `Resolver`, which a
  test points at a local server.

Alignment is relaxed but never looser than DMARC's: the two domains are equal or one is a
subdomain of the other (mail.client.fr signs for client.fr). Nothing here raises on bad input:
a mail that cannot be checked is simply not verified, with the reason.
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any

import dkim
import dns.exception
import dns.nameserver
import dns.resolver
import spf

log = logging.getLogger("guichet.email")

MAX_SIGNATURES = 3  # a mail with more DKIM signatures than this has the rest ignored (cost)


@dataclass(frozen=True, slots=True)
class MailIdentity:
    verified: bool
    how: str  # "dkim=pass header.d=client.fr", "dmarc=pass (mx.example.com)", or why not

    def to_dict(self) -> dict[str, Any]:
        return {"verified": self.verified, "how": self.how}


UNVERIFIED = MailIdentity(False, "no authentication")


@dataclass(frozen=True, slots=True)
class AuthOptions:
    trusted_authserv_ids: tuple[str, ...] = ()
    dkim: bool = True
    spf: bool = False
    dns_servers: tuple[str, ...] = ()  # "host" or "host:port"; empty: the system's resolver
    dns_timeout: float = 5.0


def aligned(domain: str, from_domain: str) -> bool:
    d, f = domain.lower().strip().rstrip("."), from_domain.lower().strip().rstrip(".")
    if not d or not f or "." not in d or "." not in f:
        return False
    return d == f or d.endswith("." + f) or f.endswith("." + d)


def _domain(value: str) -> str:
    return value.rpartition("@")[2].strip().strip("<>").lower()


class Resolver:
    """DNS lookups for DKIM keys and SPF records, through given servers or the system's."""

    def __init__(self, servers: Sequence[str] = (), timeout: float = 5.0) -> None:
        self.timeout = timeout
        if servers:
            self._resolver = dns.resolver.Resolver(configure=False)
            nameservers: list[str | dns.nameserver.Nameserver] = []
            for server in servers:
                host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
                nameservers.append(dns.nameserver.Do53Nameserver(host or server, int(port or 53)))
            self._resolver.nameservers = nameservers
        else:
            self._resolver = dns.resolver.Resolver()
        self._resolver.lifetime = timeout

    def txt(self, name: bytes, timeout: float = 5.0) -> bytes | None:
        """dkimpy's dnsfunc: the first TXT record of a name, its strings joined."""
        try:
            answer = self._resolver.resolve(name.decode("ascii"), "TXT", raise_on_no_answer=False)
        except (dns.exception.DNSException, UnicodeDecodeError, ValueError):
            return None
        for rrset in answer.response.answer:
            for item in rrset:
                if hasattr(item, "strings"):
                    return b"".join(item.strings)
        return None

    def spf_lookup(self, name: str, qtype: str, strict: bool = True, timeout: float = 20) -> list[Any]:
        """pyspf's DNSLookup, the answers in its own shapes."""
        try:
            answers = self._resolver.resolve(name, qtype, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise spf.TempError(f"DNS {exc}") from exc
        found: list[Any] = []
        for rdata in answers.rrset or ():
            if qtype in ("A", "AAAA"):
                found.append(((name, qtype), rdata.address))
            elif qtype == "MX":
                found.append(((name, qtype), (rdata.preference, rdata.exchange)))
            elif qtype == "PTR":
                found.append(((name, qtype), rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                found.append(((name, qtype), rdata.strings))
        return found


# pyspf asks DNS through one module-level function; each check names its own resolver.
_SPF_RESOLVER: contextvars.ContextVar[Resolver] = contextvars.ContextVar("spf_resolver")
_DEFAULT_SPF_LOOKUP = spf.DNSLookup


def _spf_dispatch(name: str, qtype: str, strict: bool = True, timeout: float = 20) -> list[Any]:
    resolver = _SPF_RESOLVER.get(None)
    if resolver is None:
        return list(_DEFAULT_SPF_LOOKUP(name, qtype, strict, timeout))
    return resolver.spf_lookup(name, qtype, strict, timeout)


spf.DNSLookup = _spf_dispatch

_COMMENT = re.compile(r"\([^()]*\)")


def parse_authentication_results(value: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """(authserv-id, [(method, result, {ptype.property: value})]) of one header (RFC 8601)."""
    text = value
    for _ in range(3):  # nested comments, a few levels
        text = _COMMENT.sub(" ", text)
    parts = [p.strip() for p in text.split(";")]
    authserv = (parts[0].split() or [""])[0].lower()
    results: list[tuple[str, str, dict[str, str]]] = []
    for part in parts[1:]:
        tokens = part.split()
        if not tokens or "=" not in tokens[0]:
            continue
        method, _, result = tokens[0].partition("=")
        props = {}
        for token in tokens[1:]:
            key, _, prop = token.partition("=")
            if prop:
                props[key.lower()] = prop.strip('"').lower()
        results.append((method.lower().split("/")[0], result.lower(), props))
    return authserv, results


def _from_results(
    results: list[tuple[str, str, dict[str, str]]], from_domain: str, server: str
) -> MailIdentity:
    # DMARC's own verdict first: it is the one that names the From domain.
    for method, result, props in sorted(results, key=lambda r: r[0] != "dmarc"):
        if result != "pass":
            continue
        if method == "dmarc" and aligned(props.get("header.from", from_domain), from_domain):
            return MailIdentity(True, f"dmarc=pass ({server})")
        if method == "dkim":
            signer = props.get("header.d") or _domain(props.get("header.i", ""))
            if aligned(signer, from_domain):
                return MailIdentity(True, f"dkim=pass header.d={signer} ({server})")
        if method == "spf":
            mailfrom = _domain(props.get("smtp.mailfrom", "")) or props.get("smtp.helo", "")
            if aligned(mailfrom, from_domain):
                return MailIdentity(True, f"spf=pass smtp.mailfrom={mailfrom} ({server})")
    verdicts = ", ".join(f"{m}={r}" for m, r, _ in results) or "none"
    return MailIdentity(False, f"not aligned with {from_domain}: {verdicts} ({server})")


class Authenticator:
    def __init__(self, options: AuthOptions) -> None:
        self.options = options
        self.trusted = {t.lower() for t in options.trusted_authserv_ids}
        self.resolver = Resolver(options.dns_servers, options.dns_timeout)

    def check(
        self, raw: bytes, message: Message, from_address: str, envelope_sender: str, peer_ip: str, helo: str
    ) -> MailIdentity:
        """The identity of a mail's From (blocking: DNS; run it in a thread)."""
        from_domain = _domain(from_address)
        if "@" not in from_address or not from_domain:
            return MailIdentity(False, "no usable From address")
        if self.trusted:
            for value in message.get_all("Authentication-Results", failobj=[]):
                server, results = parse_authentication_results(str(value))
                if server in self.trusted:  # the topmost of our MX: its verdict is final
                    return _from_results(results, from_domain, server)
        reasons: list[str] = []
        if self.options.dkim:
            identity = self._dkim(raw, from_domain)
            if identity.verified:
                return identity
            reasons.append(identity.how)
        if self.options.spf and peer_ip:
            identity = self._spf(peer_ip, envelope_sender, helo, from_domain)
            if identity.verified:
                return identity
            reasons.append(identity.how)
        return MailIdentity(False, "; ".join(reasons) or UNVERIFIED.how)

    def _dkim(self, raw: bytes, from_domain: str) -> MailIdentity:
        try:
            signer = dkim.DKIM(raw, minkey=1024)
            count = sum(1 for name, _ in signer.headers if name.lower() == b"dkim-signature")
        except Exception as exc:  # dkimpy raises many kinds on broken mail
            return MailIdentity(False, f"dkim: unreadable ({type(exc).__name__})")
        if not count:
            return MailIdentity(False, "dkim: no signature")
        seen: list[str] = []
        for index in range(min(count, MAX_SIGNATURES)):
            try:
                ok = signer.verify(idx=index, dnsfunc=self.resolver.txt)
            except Exception as exc:
                seen.append(f"dkim=permerror ({type(exc).__name__})")
                continue
            domain = (signer.domain or b"").decode("ascii", "replace").lower()
            if ok and aligned(domain, from_domain):
                return MailIdentity(True, f"dkim=pass header.d={domain}")
            seen.append(f"dkim={'pass' if ok else 'fail'} header.d={domain or '?'}")
        return MailIdentity(False, ", ".join(seen))

    def _spf(self, peer_ip: str, envelope_sender: str, helo: str, from_domain: str) -> MailIdentity:
        sender = envelope_sender.strip("<>")
        checked = _domain(sender) if "@" in sender else helo.lower()
        if not aligned(checked, from_domain):
            return MailIdentity(False, f"spf: {checked or '?'} not aligned with {from_domain}")
        token = _SPF_RESOLVER.set(self.resolver)
        try:
            result, _ = spf.check2(i=peer_ip, s=sender or f"postmaster@{helo}", h=helo, querytime=10)
        except Exception as exc:
            return MailIdentity(False, f"spf=temperror ({type(exc).__name__})")
        finally:
            _SPF_RESOLVER.reset(token)
        if result == "pass":
            return MailIdentity(True, f"spf=pass smtp.mailfrom={checked}")
        return MailIdentity(False, f"spf={result} smtp.mailfrom={checked}")
