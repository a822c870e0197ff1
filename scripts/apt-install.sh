# Sourced by the install-*.sh scripts: `apt_install SCRIPT PACKAGE WHAT` installs one Debian package with apt-get
# (sudo only when not root; `apt-get update` only when the first try fails) and sets SUDO for what follows. When it
# cannot, it says why and what to run, and exits 0: the tests that need WHAT then skip, loudly, or fail under CI.
apt_install() {
    local script=$1 package=$2 what=$3
    cannot() {
        echo "$script: CANNOT install Debian's $package ($1); $what will not run." \
             "Install it yourself: apt-get install -y $package" >&2
        exit 0
    }
    command -v apt-get >/dev/null 2>&1 || cannot "apt-get not found"
    SUDO=""
    if [ "$(id -u)" != "0" ]; then
        command -v sudo >/dev/null 2>&1 || cannot "not root and no sudo"
        SUDO="sudo -n"
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! $SUDO apt-get install -y -q "$package" >/dev/null 2>&1; then
        $SUDO apt-get update -q >/dev/null 2>&1 || cannot "apt-get update failed"
        $SUDO apt-get install -y -q "$package" >/dev/null 2>&1 || cannot "apt-get install -y $package failed"
    fi
}
