# hast-carp-lib.sh: helpers shared by vip-up.sh, vip-down.sh and hast-hook.sh (sourced, not run).
# Loads the settings (HAST_CARP_CONF, /etc/hast-carp.conf, or hast-carp.conf next to the scripts).

HERE=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
if [ -n "${HAST_CARP_CONF:-}" ]; then
	. "$HAST_CARP_CONF"
elif [ -r /etc/hast-carp.conf ]; then
	. /etc/hast-carp.conf
else
	. "$HERE/hast-carp.conf"
fi
: "${HASTCTL:=hastctl}" "${HASTCTL_ARGS:=}" "${VIP_PREFIX:=24}" "${DEVICE_WAIT:=30}" "${UMOUNT_WAIT:=20}"
: "${KILL_USERS:=no}" "${SECONDARY_FROM_INIT:=yes}" "${STATE_DIR:=/var/run/hastd}"
: "${LOCK_FILE:=/var/run/hast-carp.lock}" "${LOCK_WAIT:=120}" "${HOOK_CHAIN:=}"
: "${DETACH:=yes}" "${PEER_WAIT:=30}" "${PEER_PROBE:=yes}" "${BTRFS_FORGET:=yes}"
WANT_FILE=$STATE_DIR/hast-carp.want

# log LEVEL MESSAGE...: to syslog (tag hast-carp) and to stderr.
log() {
	level=$1
	shift
	echo "$(date '+%H:%M:%S.%N' | cut -c1-12) hast-carp[$$]: $level: $*" >&2
	logger -t hast-carp -p "daemon.$level" -- "$*" 2>/dev/null || true
}

# hctl SUBCOMMAND ARGS...: hastctl with the configured options.
hctl() {
	sub=$1
	shift
	# shellcheck disable=SC2086 # HASTCTL and HASTCTL_ARGS are word lists on purpose.
	$HASTCTL "$sub" $HASTCTL_ARGS "$@"
}

# set_role ROLE RESOURCE: `hastctl role ROLE RESOURCE`, logging a refusal or failure with hastctl's
# message and exit status. Never passes --force: the refusals (exit 75) exist so that neither a
# script nor ucarp makes two primaries or pulls a device from under a mounted file system; only the
# administrator may override them. Returns hastctl's exit status.
set_role() {
	out=$(hctl role "$1" "$2" 2>&1)
	rc=$?
	case $rc in
	0) return 0 ;;
	75) log err "$2: hastctl role $1 refused (exit 75): $out" ;;
	*) log err "$2: hastctl role $1 failed (exit $rc): $out" ;;
	esac
	return $rc
}

# status RESOURCE: `hastctl status RESOURCE` into $STATUS, read by sfield (one hastctl run per look:
# each is a Node.js start-up, which counts on a busy host).
status() {
	STATUS=$(hctl status "$1" 2>/dev/null) || STATUS=
}

# sfield NAME: one field of the last `status` ("role", "provname", "status", "remoteaddr"), or "".
sfield() {
	printf '%s\n' "$STATUS" | awk -v k="$1" '{ sub(/^[ \t]+/, "") } index($0, k ": ") == 1 { print substr($0, length(k) + 3); exit }'
}

# field RESOURCE NAME: status + sfield.
field() {
	status "$1"
	sfield "$2"
}

# lock: one up/down script at a time on this host (fd 9 stays open until the script exits).
lock() {
	mkdir -p "$(dirname "$LOCK_FILE")"
	exec 9>>"$LOCK_FILE"
	if ! flock -w "$LOCK_WAIT" 9; then
		log err "could not lock $LOCK_FILE within ${LOCK_WAIT}s"
		exit 1
	fi
}

# is_mounted MOUNTPOINT
is_mounted() {
	awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/self/mounts
}

# split_brain RESOURCE: true while the hook's split-brain marker exists.
split_brain() {
	[ -e "$STATE_DIR/$1.split-brain" ]
}

# request master|backup ARGS...: record what ucarp asked for last, then (DETACH=yes) go on in the
# background. ucarp waits for its up/down script and sends no advertisements meanwhile: a script that
# runs longer than 3 x advbase (promotion, mount, a dead peer's connect timeout) would make the other
# host take over too. The detached run is serialised by `lock` and does nothing if a later request
# overtook it (see `superseded`). HAST_CARP_FOREGROUND=yes (or DETACH=no) runs in the foreground.
request() {
	want=$1
	shift
	if [ -n "${HAST_CARP_REQUEST:-}" ]; then
		return 0 # the detached run of an earlier call
	fi
	mkdir -p "$STATE_DIR"
	req="$want $$ $(date '+%s')"
	echo "$req" >"$WANT_FILE.$$" && mv -f "$WANT_FILE.$$" "$WANT_FILE"
	if [ "$DETACH" = yes ] && [ "${HAST_CARP_FOREGROUND:-no}" != yes ]; then
		HAST_CARP_REQUEST=$req "$0" "$@" </dev/null &
		exit 0
	fi
	HAST_CARP_REQUEST=$req
}

# superseded: true when ucarp asked for something else after the request this run serves.
superseded() {
	[ "$(cat "$WANT_FILE" 2>/dev/null)" != "$HAST_CARP_REQUEST" ]
}

# peer_alive REMOTEADDR: true when the peer's hastd accepts a TCP connection on the HAST link within
# 1 s (REMOTEADDR as `hastctl status` shows it, default port 8457). Needs bash for /dev/tcp; without
# it, or with PEER_PROBE=no, the peer counts as alive (vip-up.sh then waits PEER_WAIT seconds).
peer_alive() {
	[ "$PEER_PROBE" = yes ] && command -v bash >/dev/null 2>&1 || return 0
	addr=${1#*://}
	case "$addr" in
	\[*\]:*) host=${addr%%]*}; host=${host#[}; port=${addr##*]:} ;;
	\[*\]) host=${addr#[}; host=${host%]}; port=8457 ;;
	*:*) host=${addr%:*}; port=${addr##*:} ;;
	*) host=$addr; port=8457 ;;
	esac
	[ -n "$host" ] || return 0
	timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

# forget_btrfs: unregister btrfs devices that belong to no mounted file system. A stale registration
# with the same fsid (a former path of this disk, a copy of it, or on a shared kernel the other
# node's device) makes `mount` fail with "wrong fs type"; mount registers the device it is given.
forget_btrfs() {
	[ "$BTRFS_FORGET" = yes ] && command -v btrfs >/dev/null 2>&1 || return 0
	btrfs device scan --forget >/dev/null 2>&1 || true
}
