#!/usr/bin/env bash
# memhp set-up for a Debian or Ubuntu machine. Installs (with apt, as root or via sudo)
# only the packages listed below, creates .venv with memhp in it, and builds the default
# guest images. It never edits apt sources or dpkg architectures: guest packages of any
# architecture come through memhp's private apt configuration in its cache.
#
#   ./setup.sh              everything
#   ./setup.sh --no-images  skip the image builds
#   ./setup.sh --kbuild     also what building kernels needs (compilers, linux-source-6.12)
#   ./setup.sh --arches     also arm64 and s390x guests: the host's arm64 QEMU, their images
#                           (s390x runs Debian's QEMU 10.0, which memhp fetches privately:
#                           the host's 7.2 has no memory devices there); with --kbuild, also
#                           their cross compilers
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(
  qemu-system-x86        # x86-64 guests (qemu-system-x86_64)
  qemu-system-ppc        # ppc64le pseries guests (qemu-system-ppc64)
  qemu-system-data       # firmware, qboot.rom among them
  debian-archive-keyring # verifies the guest packages memhp downloads
  kmod                   # depmod -b for the guest kernels' modules
  zstd                   # kernels whose modules are zstd-compressed
  openssh-client         # memhp shell
  python3-venv           # the Python environment
  cpio                   # the unit tests cross-check the initramfs writer with it
  git                    # memhp series / bisect (worktrees, git am, git bisect run)
  util-linux             # setpriv: QEMU dies with the harness (--pdeathsig)
  gpg                    # the archive tests sign the Debian mirror they serve on loopback
)

KBUILD_PACKAGES=(
  build-essential bc bison flex libelf-dev libssl-dev dwarves  # the kernel's build deps
  ccache                     # warm rebuilds in seconds
  gcc-powerpc64le-linux-gnu  # cross-building ppc64le kernels
  linux-source-6.12          # the tree the kernel-build tests use
)
ARCHES_PACKAGES=(
  qemu-system-arm  # arm64 virt guests (qemu-system-aarch64); their UEFI firmware memhp fetches
)
ARCHES_KBUILD_PACKAGES=(
  gcc-aarch64-linux-gnu  # cross-building arm64 kernels
  gcc-s390x-linux-gnu    # cross-building s390x kernels
)
kbuild=no; arches=no
case " $* " in *" --kbuild "*) kbuild=yes; PACKAGES+=("${KBUILD_PACKAGES[@]}") ;; esac
case " $* " in *" --arches "*) arches=yes; PACKAGES+=("${ARCHES_PACKAGES[@]}") ;; esac
[ "$kbuild$arches" = yesyes ] && PACKAGES+=("${ARCHES_KBUILD_PACKAGES[@]}")

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "memhp setup: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # One unreachable or mid-sync index makes apt-get update fail; the install decides.
  $sudo apt-get update -q || echo "memhp setup: apt-get update reported errors, continuing"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "memhp setup: system packages already installed"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
echo "memhp setup: Python environment ready in .venv"

# The images are built here so the first run does not wait for them. An image the archive
# cannot give right now is not fatal: the run reports its scenarios as MISS (infrastructure)
# and builds the others.
if [[ " $* " != *" --no-images "* ]]; then
  targets=("x86_64 debian:6.1" "x86_64 debian:6.12" "x86_64 debian:7.2"
           "ppc64le debian:6.1" "ppc64le debian:6.12")
  [ "$arches" = yes ] && targets+=("arm64 debian:6.12" "arm64 debian:6.1/cloud" "arm64 debian:7.2/cloud"
                                   "arm64 debian:6.12/cloud" "s390x debian:6.12"
                                   "s390x debian:7.2")
  for target in "${targets[@]}"; do
    set -- $target
    .venv/bin/memhp image build --arch "$1" --kernel "$2" ||
      echo "memhp setup: no image for $2 ($1) yet; its scenarios will report why"
  done
fi
