"""Debian packages through a private apt configuration.

Everything apt needs (sources list, state, archives, lock) lives under the cache directory,
so fetching guest packages of any architecture never edits the host's apt sources or dpkg
architectures. Indexes are read as plain text (via apt-helper, whatever compression apt
chose) so a resolution knows which suite served a package.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ArchiveError, UsageError
from harness.progress import progress

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
KEYRING_ENV = "MEMHP_DEBIAN_KEYRING"  # a private mirror signed with its own key
MIRROR_ENV = "MEMHP_DEBIAN_MIRROR"
SECURITY_MIRROR_ENV = "MEMHP_DEBIAN_SECURITY_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# Indexes older than this are refreshed before resolving a spec.
MAX_INDEX_AGE = 12 * 3600

# Suites searched for kernels, oldest first. Backports and security carry newer builds of a
# line than the release itself; trixie-backports carries the 7.x line.
SUITES = (
    "bookworm",
    "bookworm-security",
    "bookworm-backports",
    "trixie",
    "trixie-security",
    "trixie-backports",
)
# Guest userspace (busybox, dropbear and its libraries) always comes from one suite.
USERSPACE_SUITE = "bookworm"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str
    suite: str
    filename: str  # pool path
    sha256: str
    depends: str
    source: str
    size: int = 0

    @property
    def upstream(self) -> str:
        """Upstream part of the version: 6.12.117-1~deb12u1 -> 6.12.117."""
        return self.version.split(":", 1)[-1].rsplit("-", 1)[0]

    @property
    def deb_name(self) -> str:
        return Path(self.filename).name

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.suite})"


class AptCache:
    """A private apt root for one Debian architecture."""

    def __init__(self, root: Path, debian_arch: str) -> None:
        self.root = root
        self.arch = debian_arch
        self.debs = root / "debs"
        self.mirror = os.environ.get(MIRROR_ENV, DEFAULT_MIRROR).rstrip("/")
        self.security = os.environ.get(SECURITY_MIRROR_ENV, DEFAULT_SECURITY_MIRROR).rstrip("/")
        self.keyring = Path(os.environ.get(KEYRING_ENV) or KEYRING)
        self._index: dict[str, dict[str, list[Package]]] | None = None
        self._unavailable: dict[str, str] = {}  # URL -> why it did not download (this run)

    # -- configuration -------------------------------------------------------------------

    def _options(self) -> list[str]:
        r = self.root
        opts = {
            "Dir::Etc": f"{r}/etc",
            "Dir::Etc::SourceList": f"{r}/etc/sources.list",
            "Dir::Etc::SourceParts": f"{r}/etc/sources.list.d",
            "Dir::Etc::Preferences": f"{r}/etc/preferences",
            "Dir::Etc::PreferencesParts": f"{r}/etc/preferences.d",
            "Dir::Etc::TrustedParts": f"{r}/etc/trusted.gpg.d",
            "Dir::State": f"{r}/state",
            "Dir::State::status": f"{r}/state/status",
            "Dir::Cache": f"{r}/cache",
            "APT::Architecture": self.arch,
            "APT::Architectures": self.arch,
            # Downloads land in our own directory, which the _apt user may not enter.
            "APT::Sandbox::User": "root" if os.geteuid() == 0 else "",
            "Acquire::Languages": "none",
        }
        args = []
        for key, value in opts.items():
            if value:
                args += ["-o", f"{key}={value}"]
        return args

    def base_url(self, suite: str) -> str:
        return self.security if suite.endswith("-security") else self.mirror

    def url(self, pkg: Package) -> str:
        """Where ``pkg`` lives: the pool of the suite whose index listed it."""
        return f"{self.base_url(pkg.suite)}/{pkg.filename}"

    def _write_config(self) -> None:
        if not self.keyring.is_file():
            raise UsageError(
                f"{self.keyring} is missing: install debian-archive-keyring "
                f"(./setup.sh does) or set {KEYRING_ENV}"
            )
        for sub in (
            "etc/sources.list.d",
            "etc/preferences.d",
            "etc/trusted.gpg.d",
            "state/lists/partial",
            "cache/archives/partial",
            "debs",
        ):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "state/status").touch()
        lines = [
            f"deb [arch={self.arch} signed-by={self.keyring}] {self.base_url(suite)} {suite} main"
            for suite in SUITES
        ]
        (self.root / "etc/sources.list").write_text("\n".join(lines) + "\n")

    # -- index ---------------------------------------------------------------------------

    def update(self, max_age: float = MAX_INDEX_AGE) -> None:
        """Refresh the indexes when stale. One failing suite only costs that suite; with no
        network at all, the indexes of an earlier refresh are used and the run says so."""
        stamp = self.root / "state/updated"
        if stamp.exists() and time.time() - stamp.stat().st_mtime < max_age:
            return
        self._write_config()
        with progress(f"apt: refreshing Debian {self.arch} indexes ({', '.join(SUITES)})"):
            proc = subprocess.run(
                ["apt-get", *self._options(), "-q", "update"], capture_output=True, text=True
            )
        # apt exits non-zero when any one index fails (mirror sync, stale size); keep
        # going with the suites that did load and say which did not.
        failed = [
            line[3:].strip()
            for line in proc.stdout.splitlines() + proc.stderr.splitlines()
            if line.startswith("E:") or (line.startswith("W:") and "fetch" in line)
        ]
        for line in failed:
            progress.note(f"apt ({self.arch}): {line}")
        self._index = None
        if not any(self._list_files()):
            raise ArchiveError(
                f"no Debian {self.arch} index could be downloaded from {self.mirror}"
                + (f" ({failed[0]})" if failed else "")
                + f": check the network or set {MIRROR_ENV}"
            )
        if proc.returncode != 0 and len(failed) >= len(SUITES):
            age = time.time() - max(p.stat().st_mtime for _, p in self._list_files())
            progress.note(
                f"apt ({self.arch}): no index could be refreshed; using the ones "
                f"from {age / 3600:.1f} h ago"
            )
            return  # not stamped: the next run tries again
        stamp.touch()

    def _list_files(self) -> Iterator[tuple[str, Path]]:
        lists = self.root / "state/lists"
        if not lists.is_dir():
            return
        for path in sorted(lists.iterdir()):
            m = re.search(r"_dists_([^_]+)_main_binary-([^_]+)_Packages", path.name)
            if m and m.group(2) == self.arch:
                yield m.group(1), path

    def index(self) -> dict[str, dict[str, list[Package]]]:
        """suite -> package name -> packages (usually one per suite)."""
        if self._index is None:
            self._index = {}
            for suite, path in self._list_files():
                text = subprocess.run(
                    ["/usr/lib/apt/apt-helper", "cat-file", str(path)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                table: dict[str, list[Package]] = {}
                for pkg in parse_packages(text, suite):
                    table.setdefault(pkg.name, []).append(pkg)
                self._index[suite] = table
        return self._index

    def find(self, match: Callable[[str], bool], suites: Iterable[str] = SUITES) -> list[Package]:
        found = []
        index = self.index()
        for suite in suites:
            for name, pkgs in index.get(suite, {}).items():
                if match(name):
                    found.extend(pkgs)
        return found

    def newest(self, name: str, suite: str) -> Package:
        pkgs = self.index().get(suite, {}).get(name)
        if not pkgs:
            raise UsageError(f"Debian package {name} ({self.arch}) not found in {suite}")
        return max(pkgs, key=lambda p: VersionKey(p.version))

    def listed(self, name: str, version: str, prefer: str) -> Package | None:
        """``name`` at ``version`` as an index lists it: ``prefer``'s suite first."""
        for suite in (prefer, *(s for s in SUITES if s != prefer)):
            for pkg in self.index().get(suite, {}).get(name, []):
                if pkg.version == version:
                    return pkg
        return None

    def copies(self, pkg: Package) -> list[Package]:
        """``pkg`` and the same file (name, version, checksum) as listed by other suites."""
        others = [
            p
            for suite in SUITES
            if suite != pkg.suite
            for p in self.index().get(suite, {}).get(pkg.name, [])
            if p.version == pkg.version and p.sha256 == pkg.sha256
        ]
        return [pkg, *others]

    def closure(
        self, names: Iterable[str], suite: str, follow: Callable[[str], bool] = lambda name: True
    ) -> list[Package]:
        """The packages plus the dependencies ``follow`` accepts (first alternative), in one
        suite, transitively."""
        todo, seen, out = list(names), set(), []
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            pkg = self.newest(name, suite)
            out.append(pkg)
            todo.extend(n for n in depends_names(pkg.depends) if follow(n))
        return out

    # -- downloads -----------------------------------------------------------------------

    def download(self, pkgs: Iterable[Package]) -> list[Path]:
        """Fetch .deb files into the cache (kept: a second build downloads nothing). Each
        comes from the pool of the suite that listed it, checked against that index's
        SHA256; a file that pool lacks is taken from another suite listing the same file.
        """
        return [self.fetch_any(pkg) for pkg in pkgs]

    def fetch_any(self, pkg: Package) -> Path:
        """``pkg`` from its own suite, else from any other suite that lists the same file;
        ArchiveError naming every listing that failed, and why."""
        try:
            return self.fetch(pkg)
        except ArchiveError as first:
            problems = [str(first)]
        for copy in self.copies(pkg)[1:] if any(self._list_files()) else []:
            try:
                path = self.fetch(copy)
            except ArchiveError as exc:
                problems.append(str(exc))
                continue
            progress.note(
                f"apt: took {copy.name} {copy.version} from {copy.suite} instead ({problems[0]})"
            )
            return path
        raise ArchiveError("; ".join(problems))

    def fetch(self, pkg: Package) -> Path:
        """One .deb from its own suite's pool (apt's transport, proxies and all)."""
        path = self.debs / pkg.deb_name
        if path.exists() and (not pkg.sha256 or file_sha256(path) == pkg.sha256):
            return path
        url = self.url(pkg)
        if url in self._unavailable:  # tried already in this run
            raise ArchiveError(f"{pkg}: {self._unavailable[url]}")
        self.debs.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        cmd = ["/usr/lib/apt/apt-helper", *self._options(), "download-file", url, str(part)]
        if pkg.sha256:
            cmd.append(f"SHA256:{pkg.sha256}")
        with progress(f"apt: downloading {pkg}"):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0 or not part.exists():
                part.unlink(missing_ok=True)
                self._unavailable[url] = _fetch_problem(proc.stdout + proc.stderr)
                raise ArchiveError(f"{pkg}: {self._unavailable[url]}")
        part.replace(path)
        return path


def _fetch_problem(output: str) -> str:
    """apt's reason for a failed download, in a few words: '404 Not Found', 'Hash Sum
    mismatch', a connection error."""
    for line in output.splitlines():
        m = re.match(r"E: Failed to fetch \S+\s+(.*)", line.strip())
        if m:
            return " ".join(re.sub(r"\[IP: [^]]*\]", "", m.group(1)).split())
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return lines[-1] if lines else "download failed"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_packages(text: str, suite: str) -> Iterator[Package]:
    """Parse a Debian Packages index (deb822 stanzas)."""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith((" ", "\t")):
                continue  # continuation lines (descriptions): not needed
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if "Package" not in fields:
            continue
        yield Package(
            name=fields["Package"],
            version=fields.get("Version", ""),
            arch=fields.get("Architecture", ""),
            suite=suite,
            filename=fields.get("Filename", ""),
            sha256=fields.get("SHA256", ""),
            size=int(fields.get("Size") or 0),
            depends=", ".join(filter(None, (fields.get("Pre-Depends"), fields.get("Depends")))),
            source=fields.get("Source", fields["Package"]).split()[0],
        )


@dataclass(frozen=True)
class Dependency:
    """One clause of a Depends field, read by its first alternative."""

    clause: str  # as the index writes it: "dracut | initramfs-tools (>= 0.120)"
    name: str
    relation: str = ""  # "=", ">=", ... or "" for any version
    version: str = ""

    def __str__(self) -> str:
        return self.clause


def parse_depends(depends: str) -> list[Dependency]:
    """The clauses of a Depends field; versions and arch qualifiers of the first alternative."""
    out = []
    for clause in filter(None, (c.strip() for c in depends.split(","))):
        first = clause.split("|")[0].strip()
        m = re.match(r"([^\s(:\[]+)\S*\s*(?:\(\s*([<>=]+)\s*([^)\s]+)\s*\))?", first)
        name, relation, version = m.groups() if m else (first, None, None)
        out.append(Dependency(clause, name, relation or "", version or ""))
    return out


def depends_names(depends: str) -> list[str]:
    """Package names of a Depends field, first alternative of each, no versions/arch quals."""
    names = []
    for clause in filter(None, (c.strip() for c in depends.split(","))):
        first = clause.split("|")[0].strip()
        names.append(re.split(r"[\s(:\[]", first, maxsplit=1)[0])
    return names


# -- Debian version comparison (deb-version(7)) ------------------------------------------


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split(version: str) -> tuple[int, str, str]:
    epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
    return int(epoch or 0), upstream, revision


def compare_versions(a: str, b: str) -> int:
    """<0, 0, >0 like dpkg --compare-versions."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return ea - eb
    return _compare_part(ua, ub) or _compare_part(ra, rb)


class VersionKey:
    """Sort key for Debian versions, compared the way dpkg does."""

    __slots__ = ("version",)

    def __init__(self, version: str) -> None:
        self.version = version

    def __lt__(self, other: VersionKey) -> bool:
        return compare_versions(self.version, other.version) < 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VersionKey) and compare_versions(self.version, other.version) == 0

    # Equal keys may be spelled differently ("1.0" == "1.0-0"): no consistent hash.
    __hash__ = None  # type: ignore[assignment]
