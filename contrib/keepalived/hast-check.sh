#!/bin/sh
# hast-check.sh: keepalived track_script (`vrrp_script { script /path/hast-check.sh }`). Healthy (exit 0)
# when hastd answers `hastctl status --json` for every resource of HAST_RESOURCES and each is primary
# with a worker and its device, or secondary (whose worker, started when a primary connects, has a
# consistent copy). Unhealthy: hastd down, a resource in init or with a start-up error, an
# inconsistent copy (hastd would refuse to promote it), a primary without its device, or the last
# MASTER transition could not bring the storage up (FAILED_FILE). keepalived then puts the instance in
# FAULT: it drops the address, and hast-notify.sh unmounts and demotes. While hast-notify.sh works (it
# holds LOCK_FILE) the state is a transition, not a fault: a promotion has a primary without its
# device for up to DEVICE_WAIT seconds.
set -u
. "$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)/hast-keepalived-lib.sh"

in_transition() {
	! flock -n "$LOCK_FILE" true 2>/dev/null
}

if [ -e "$FAILED_FILE" ]; then
	echo "hast-check: the last MASTER transition failed ($FAILED_FILE)" >&2
	exit 1
fi
in_transition && exit 0
res=
for entry in $HAST_RESOURCES; do
	res="$res $(printf '%s' "${entry%%:*}" | tr ',' ' ')"
done
# shellcheck disable=SC2086 # res is a word list.
json=$(hctl status --json $res 2>&1) || {
	echo "hast-check: hastctl status failed: $json" >&2
	exit 1
}
# Prints the first unhealthy resource and why; nothing when all are healthy.
bad=$(printf '%s\n' "$json" | $JQ -r '
	[.[] | if .error != null then "\(.name): \(.error)"
	elif .role != "primary" and .role != "secondary" then "\(.name): role \(.role // "init")"
	elif .role == "primary" and .worker == null then "\(.name): primary without a worker (\(.lasterror // "not started"))"
	elif .role == "primary" and (.worker.device // null) == null then "\(.name): primary without its device"
	elif (.worker.disk.consistent // true) == false then "\(.name): local copy inconsistent"
	else empty end] | first // empty') || {
	echo "hast-check: cannot parse hastctl status --json" >&2
	exit 1
}
if [ -n "$bad" ] && ! in_transition; then
	echo "hast-check: $bad" >&2
	exit 1
fi
exit 0
