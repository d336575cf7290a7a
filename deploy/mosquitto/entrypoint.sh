#!/bin/sh
# The production broker's entrypoint (eclipse-mosquitto image, busybox sh; tested with Debian's mosquitto under
# dash and busybox): runs mosquitto, and applies the logins the platform writes.
#
# The platform writes `passwd` and `acl` into the folder it shares with this container, then raises the number
# in `reload.request` (platform/registry/broker.py). This script copies both files to mosquitto's own folder,
# owned by mosquitto, sends SIGHUP, waits until mosquitto logs that it is reloading, and writes the number into
# `reload.done`; the platform's request returns only then. A SIGHUP that reaches mosquitto while it reloads is
# lost (it clears its reload flag when the reload ends), so it is sent again until a reload is logged.
#
# Usage: entrypoint.sh [CONFIG]. CONFIG (default /mosquitto/config/mosquitto.conf) must read its password_file
# and acl_file from $ELDERCARE_BROKER_LIVE_DIR and log to stderr at level information (the reload line). The
# files named in $ELDERCARE_BROKER_TLS_FILES (the TLS secrets, readable by root only) are copied there too,
# for mosquitto's own user, under their own names.
set -eu

config=${1:-/mosquitto/config/mosquitto.conf}
auth=${ELDERCARE_BROKER_AUTH_DIR:-/eldercare/broker-auth}  # shared with the platform, which owns it
live=${ELDERCARE_BROKER_LIVE_DIR:-/mosquitto/live}         # mosquitto's copies
run=${ELDERCARE_BROKER_RUN_DIR:-/run/eldercare-broker}     # this script's own state
data=${ELDERCARE_BROKER_DATA_DIR:-/mosquitto/data}         # mosquitto's persistence
platform_uid=${ELDERCARE_PLATFORM_UID:-10001}             # the platform image's user
broker_user=${ELDERCARE_BROKER_USER:-mosquitto}           # the user mosquitto drops to when started as root
mosquitto=${MOSQUITTO:-mosquitto}
tls_files=${ELDERCARE_BROKER_TLS_FILES:-}                  # copied into $live at start (see install_tls)
poll=${ELDERCARE_BROKER_POLL_S:-0.1}

say() { printf 'eldercare-broker: %s\n' "$*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }

number() { # the number in file $1; 0 when it is missing or holds something else
    value=$(cat "$1" 2>/dev/null || true)
    case $value in
        '' | *[!0-9]*) echo 0 ;;
        *) echo "$value" ;;
    esac
}

put() { # write $2 into file $1 atomically
    printf '%s\n' "$2" >"$1.new"
    mv -f "$1.new" "$1"
}

copy_in() { # copy file $1 (an empty one when $1 is missing) to $live/$2, readable by mosquitto's user only
    if [ -f "$1" ]; then cp "$1" "$live/.$2.new"; else : >"$live/.$2.new"; fi
    chmod 0600 "$live/.$2.new"
    if is_root; then chown "$broker_user" "$live/.$2.new"; fi
    mv -f "$live/.$2.new" "$live/$2"
}

install_files() { # the platform's passwd and acl (empty until it writes them) to where mosquitto reads them
    for name in passwd acl; do copy_in "$auth/$name" "$name"; done
}

install_tls() { # mosquitto 2.0 reads its certificates and key after dropping to its user; secrets are root's
    for file in $tls_files; do
        if [ ! -f "$file" ]; then
            say "the TLS file $file is missing"
            exit 1
        fi
        copy_in "$file" "$(basename "$file")"
    done
}

read_log() { # mosquitto's log: passed on to our stderr; counts reloads, notes start-up and the end
    count=0
    while IFS= read -r line; do
        printf '%s\n' "$line" >&2
        case $line in
            "Reloading config." | *": Reloading config.")
                count=$((count + 1))
                put "$run/reloads" "$count"
                ;;
            "mosquitto version "*" running" | *": mosquitto version "*" running") : >"$run/running" ;;
        esac
    done
    : >"$run/ended"
}

reload() { # 0 once mosquitto has begun a reload after the SIGHUP that followed the new files
    install_files
    before=$(number "$run/reloads")
    sent=0
    tick=0
    while [ "$tick" -lt 100 ]; do # 5 s
        if [ $((tick % 10)) -eq 0 ]; then
            kill -HUP "$broker" 2>/dev/null || return 1
            sent=$((sent + 1))
        fi
        sleep 0.05
        if [ "$(number "$run/reloads")" -gt "$before" ]; then
            # A signal sent again may yet start a reload of its own; let its line arrive before the next
            # request counts reloads, or that request could take it for its own.
            if [ "$sent" -gt 1 ]; then sleep 0.5; fi
            return 0
        fi
        tick=$((tick + 1))
    done
    say "mosquitto logged no reload within 5 s of SIGHUP; will try again"
    return 1
}

mkdir -p "$auth" "$live" "$run"
rm -f "$run/reloads" "$run/running" "$run/ended" "$run/ready" "$run/log"
if is_root; then
    chown "$platform_uid" "$auth"
    chmod 0700 "$auth"
    chown "$broker_user" "$live"
    chmod 0700 "$live"
    if [ -d "$data" ]; then chown -R "$broker_user" "$data"; fi
fi

applied=$(number "$auth/reload.request")
install_files # mosquitto reads these at start: they answer every request made so far
install_tls   # a renewed certificate takes a restart of the container
broker=
trap 'if [ -n "$broker" ]; then kill -TERM "$broker" 2>/dev/null || true; fi' TERM INT
mkfifo "$run/log"
read_log <"$run/log" &
reader=$!
"$mosquitto" -c "$config" 2>"$run/log" &
broker=$!

check_reader() { # exits when the log reader died before mosquitto ended: no reload could be acknowledged again
    if [ -e "$run/ended" ] || kill -0 "$reader" 2>/dev/null; then return 0; fi
    say "the log reader of mosquitto died; stopping mosquitto so that the container is restarted"
    kill -TERM "$broker" 2>/dev/null || true
    wait "$broker" || true
    rm -f "$run/ready"
    exit 1
}

until [ -e "$run/running" ] || [ -e "$run/ended" ]; do
    check_reader
    sleep "$poll"
done
if [ -e "$run/running" ]; then
    put "$auth/reload.done" "$applied"
    : >"$run/ready"
    say "mosquitto is running; logins of reload $applied loaded"
fi

while [ ! -e "$run/ended" ]; do
    check_reader
    request=$(number "$auth/reload.request")
    if [ "$request" != "$applied" ] && reload; then
        put "$auth/reload.done" "$request"
        applied=$request
    fi
    sleep "$poll"
done

status=0
wait "$broker" || status=$?
rm -f "$run/ready"
say "mosquitto exited with status $status"
exit "$status"
