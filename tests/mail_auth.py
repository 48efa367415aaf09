"""Proving who sent a mail, in tests: a real DNS server on loopback (dnspython's wire format,
answering from a table) and DKIM keys of the test's own, signing with dkimpy as a sender's
provider would. Guichet's code under test asks this server through its real resolver."""

from __future__ import annotations

import base64
import socket
import subprocess
import threading
from pathlib import Path

import dkim
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsServer:
    """Answers TXT (and A) queries from `records` over UDP; NXDOMAIN for anything else."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.queries: list[tuple[str, str]] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._socket.getsockname()[1]}"

    def txt(self, name: str, *values: str) -> None:
        self.records[(name.lower().rstrip("."), "TXT")] = list(values)

    def start(self) -> DnsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=2)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                data, client = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            question = query.question[0]
            name = question.name.to_text().lower().rstrip(".")
            kind = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, kind))
            values = self.records.get((name, kind))
            if values is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                rrset = dns.rrset.from_text(
                    question.name, 60, dns.rdataclass.IN, question.rdtype,
                    *(_quoted(v) if kind == "TXT" else v for v in values),
                )  # fmt: skip
                response.answer.append(rrset)
            self._socket.sendto(response.to_wire(), client)


def _quoted(value: str) -> str:
    # A TXT record holds strings of at most 255 octets each: a long key is split, as in a zone file.
    return " ".join(f'"{value[i : i + 250]}"' for i in range(0, len(value), 250))


class DkimKey:
    """An RSA key of the test's own for one domain, published in `dns` under `selector`."""

    def __init__(self, directory: Path, domain: str, dns_server: DnsServer, selector: str = "test") -> None:
        self.domain, self.selector = domain, selector
        directory.mkdir(parents=True, exist_ok=True)
        key = directory / f"{domain}.pem"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        self.private = key.read_bytes()
        public = subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True
        ).stdout
        dns_server.txt(
            f"{selector}._domainkey.{domain}", f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"
        )

    def sign(self, raw: bytes) -> bytes:
        """The mail with a DKIM-Signature of this domain on top, as its provider sends it."""
        headers = [b"from", b"to", b"subject", b"date", b"message-id", b"in-reply-to", b"references"]
        signature = dkim.sign(
            raw, self.selector.encode(), self.domain.encode(), self.private, include_headers=headers
        )
        return bytes(signature) + raw
