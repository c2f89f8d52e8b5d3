# hast-failover.sh: the failover logic shared by contrib/ucarp, contrib/keepalived and the Pacemaker
# agent contrib/pacemaker/hast (sourced, not run): bring a GROUP of HAST resources up (promote all,
# wait for their devices, mount one file system over them) or down (unmount, demote all) as one.
# Never passes --force; hastctl's refusals are logged and respected. The caller sets FAILOVER_TAG (the
# syslog tag) and loads its settings first; every setting has a default here.
#
# A group entry is "res[,res...]:mountpoint:fstype[:mount-options]" (HAST_RESOURCES holds
# space-separated entries). Several resources under one mount are for a multi-device file system
# (btrfs RAID1 over four resources): the first resource's device is mounted and, for btrfs, the others
# are named with `-o device=`. Mountpoint "-" means no mount (Pacemaker's Filesystem resource mounts).

: "${FAILOVER_TAG:=hast-failover}"
: "${HASTCTL:=hastctl}" "${HASTCTL_ARGS:=}" "${DEVICE_WAIT:=30}" "${UMOUNT_WAIT:=20}"
: "${KILL_USERS:=no}" "${SECONDARY_FROM_INIT:=yes}" "${STATE_DIR:=/var/run/hastd}"
: "${LOCK_FILE:=/var/run/hast-failover.lock}" "${LOCK_WAIT:=120}"
: "${PEER_WAIT:=30}" "${BTRFS_FORGET:=yes}"
WANT_FILE=$STATE_DIR/$FAILOVER_TAG.want

# log LEVEL MESSAGE...: to syslog (tag FAILOVER_TAG) and to stderr, with a millisecond timestamp.
log() {
	level=$1
	shift
	echo "$(date '+%H:%M:%S.%N' | cut -c1-12) $FAILOVER_TAG[$$]: $level: $*" >&2
	logger -t "$FAILOVER_TAG" -p "daemon.$level" -- "$*" 2>/dev/null || true
}

# hctl SUBCOMMAND ARGS...: hastctl with the configured options.
hctl() {
	sub=$1
	shift
	# shellcheck disable=SC2086 # HASTCTL and HASTCTL_ARGS are word lists on purpose.
	$HASTCTL "$sub" $HASTCTL_ARGS "$@"
}

# set_role ROLE RESOURCE...: one `hastctl role ROLE RESOURCE...`, logging a refusal or failure with
# hastctl's message and exit status. Never passes --force: the refusals (exit 75) exist so that no
# script makes two primaries or pulls a device from under a mounted file system; only the
# administrator may override them. Returns hastctl's exit status.
set_role() {
	role=$1
	shift
	out=$(hctl role "$role" "$@" 2>&1)
	rc=$?
	case $rc in
	0) return 0 ;;
	75) log err "$*: hastctl role $role refused (exit 75): $out" ;;
	*) log err "$*: hastctl role $role failed (exit $rc): $out" ;;
	esac
	return $rc
}

# status RESOURCE...: one `hastctl status RESOURCE...` into $STATUS, read by sfield (one hastctl run
# per look: each is a Node.js start-up, which counts on a busy host).
status() {
	STATUS=$(hctl status "$@" 2>/dev/null) || STATUS=
}

# sfield RESOURCE NAME: one field of RESOURCE's block in the last `status` ("role", "provname",
# "status", "remoteaddr"), or "".
sfield() {
	printf '%s\n' "$STATUS" | awk -v r="$1:" -v k="$2" '
		/^[^ \t]/ { inres = ($0 == r); next }
		inres { sub(/^[ \t]+/, ""); if (index($0, k ": ") == 1) { print substr($0, length(k) + 3); exit } }'
}

# field RESOURCE NAME: status + sfield.
field() {
	status "$1"
	sfield "$1" "$2"
}

# lock: one failover run at a time on this host (fd 9 stays open until the script exits).
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

# request master|backup: record what the failover engine asked for last, in WANT_FILE (the id goes
# into HAST_FAILOVER_REQUEST). Runs serialised by `lock` check `superseded` and do nothing when a
# later request overtook them (engines may call back to back: MASTER then BACKUP).
request() {
	mkdir -p "$STATE_DIR"
	HAST_FAILOVER_REQUEST="$1 $$ $(date '+%s.%N')"
	echo "$HAST_FAILOVER_REQUEST" >"$WANT_FILE.$$" && mv -f "$WANT_FILE.$$" "$WANT_FILE"
	export HAST_FAILOVER_REQUEST
}

# superseded: true when the engine asked for something else after the request this run serves
# (never without a request: Pacemaker serialises its own actions).
superseded() {
	[ -n "${HAST_FAILOVER_REQUEST:-}" ] && [ "$(cat "$WANT_FILE" 2>/dev/null)" != "$HAST_FAILOVER_REQUEST" ]
}

# forget_btrfs: unregister btrfs devices that belong to no mounted file system. A stale registration
# with the same fsid (a former path of this disk, a copy of it, or on a shared kernel the other
# node's device) makes `mount` fail with "wrong fs type"; mount registers the devices it is given.
forget_btrfs() {
	[ "$BTRFS_FORGET" = yes ] && command -v btrfs >/dev/null 2>&1 || return 0
	btrfs device scan --forget >/dev/null 2>&1 || true
}

# parse_entry ENTRY: sets G_RES (space-separated resources), G_MNT, G_FS, G_OPTS.
parse_entry() {
	G_RES=$(printf '%s' "${1%%:*}" | tr ',' ' ')
	rest=${1#*:}
	[ "$rest" = "$1" ] && rest=-
	G_MNT=${rest%%:*}
	rest=${rest#*:}
	G_FS=${rest%%:*}
	G_OPTS=
	case "$rest" in *:*) G_OPTS=${rest#*:} ;; esac
}

# devices RESOURCE...: /dev/hast/<provname> of each, from the last `status`, space-separated.
devices() {
	devs=
	for r in "$@"; do
		p=$(sfield "$r" provname)
		devs="$devs /dev/hast/${p:-$r}"
	done
	echo "${devs# }"
}

# promote_group RESOURCE...: make every resource primary and wait for its device, or none: a
# resource refused or failed demotes the group's resources again. Refuses while a resource is
# split-brained. hastd itself refuses (75) while this host's secondary serves a primary that still
# answers on the HAST link (the engine elected us, so the peer is demoting, or cut off from us on the
# public network only; a dead peer — our secondary notices only after its receive timeout — hastd
# finds with a TCP probe and promotes): retry every second for up to PEER_WAIT seconds for it to let
# go. Returns 0, 1 (refused or failed) or 2 (superseded meanwhile).
promote_group() {
	for r in "$@"; do
		if split_brain "$r"; then
			log err "$r: split-brain marker $STATE_DIR/$r.split-brain present, not promoting nor mounting $*"
			return 1
		fi
	done
	waited=0
	while :; do
		# One hastctl for the group ("Role unchanged" for a resource already primary). Failed (66, 70,
		# 71, 77) when a worker could not open the disk, set up the device or found its copy
		# inconsistent: the group is not brought up.
		out=$(hctl role primary "$@" 2>&1)
		rc=$?
		[ "$rc" -eq 0 ] && break
		if [ "$rc" -ne 75 ]; then
			log err "$*: hastctl role primary failed (exit $rc): $out"
			rollback "$@"
			return 1
		fi
		[ "$waited" -eq 0 ] && log notice "$*: hastctl role primary refused (exit 75): $out; waiting up to ${PEER_WAIT}s for the peer to let go"
		if superseded; then
			log notice "$*: asked to step down meanwhile, not promoting"
			rollback "$@"
			return 2
		fi
		if [ "$waited" -ge "$PEER_WAIT" ]; then
			log err "$*: the peer is still primary after ${PEER_WAIT}s, not promoting (split public network?)"
			rollback "$@"
			return 1
		fi
		sleep 1
		waited=$((waited + 1))
	done
	log notice "$*: role -> primary"
	status "$@"
	for dev in $(devices "$@"); do
		waited=0
		while [ ! -b "$dev" ] && [ "$waited" -lt $((DEVICE_WAIT * 20)) ]; do
			sleep 0.05
			waited=$((waited + 1))
		done
		if [ ! -b "$dev" ]; then
			log err "$dev did not appear within ${DEVICE_WAIT}s"
			rollback "$@"
			return 1
		fi
	done
	log notice "$*: primary, devices $(devices "$@") ready"
	return 0
}

# rollback RESOURCE...: demote the group's primaries again (a half-promoted group is never left; a
# resource whose device is already in use stays primary: hastd refuses, and that is logged).
rollback() {
	[ $# -gt 0 ] || return 0
	status "$@"
	back=
	for r in "$@"; do
		[ "$(sfield "$r" role)" = primary ] && back="$back $r"
	done
	[ -n "$back" ] || return 0
	back=${back# }
	# shellcheck disable=SC2086 # back is a word list.
	if set_role secondary $back; then
		log notice "$back: promotion of the group undone, secondary again"
	fi
}

# demote_group RESOURCE...: every primary (and, with SECONDARY_FROM_INIT=yes, every resource in role
# init after a boot) becomes secondary. Refused (75) while a device is still mounted or open: that
# resource stays primary and keeps serving, so the peer's promote_group sees a connected primary and
# refuses; no second primary, no lost device. Returns non-zero when a resource could not be demoted.
demote_group() {
	status "$@"
	todo=
	for r in "$@"; do
		role=$(sfield "$r" role)
		case "$role" in
		primary) todo="$todo $r" ;;
		init) [ "$SECONDARY_FROM_INIT" = yes ] && todo="$todo $r" ;;
		secondary) ;;
		*)
			log err "$r: unknown role '$role' (is hastd running?)"
			return 1
			;;
		esac
	done
	todo=${todo# }
	if [ -z "$todo" ]; then
		log info "$*: already secondary"
		return 0
	fi
	# shellcheck disable=SC2086 # todo is a word list.
	set_role secondary $todo || return 1
	log notice "$todo: role -> secondary"
}

# mount_group RESOURCE...: mount the group's file system (G_MNT, G_FS, G_OPTS from parse_entry) on
# the devices of its resources; backs out when a split-brain was found on promotion.
mount_group() {
	[ "$G_MNT" = - ] && return 0
	if is_mounted "$G_MNT"; then
		log info "$*: $G_MNT already mounted"
		return 0
	fi
	devs=$(devices "$@")
	first=${devs%% *}
	opts=$G_OPTS
	if [ "$G_FS" = btrfs ]; then
		forget_btrfs
		for d in ${devs#"$first"}; do opts="${opts:+$opts,}device=$d"; done
	fi
	mkdir -p "$G_MNT"
	# No fsck: btrfs is consistent after a crash; ext4/xfs replay their journal in mount.
	if ! out=$(mount -t "$G_FS" ${opts:+-o "$opts"} "$first" "$G_MNT" 2>&1); then
		log err "$*: mount -t $G_FS ${opts:+-o $opts }$first $G_MNT failed: $out"
		return 1
	fi
	# The first connection attempt completes before a device serves I/O, so a split-brain found on
	# promotion has fired its hook by now: back out rather than serve diverged data.
	for r in "$@"; do
		if split_brain "$r"; then
			log err "$r: split-brain detected on promotion, unmounting $G_MNT"
			umount "$G_MNT" || umount -l "$G_MNT"
			return 1
		fi
	done
	log notice "$*: $devs mounted on $G_MNT ($G_FS)"
}

# umount_group: unmount G_MNT (fuser -km first with KILL_USERS=yes); a hung umount falls back to a
# lazy one and returns 1 (demote_group then tries anyway: hastd refuses while the device is in use).
umount_group() {
	[ "$G_MNT" = - ] && return 0
	is_mounted "$G_MNT" || return 0
	if [ "$KILL_USERS" = yes ]; then
		fuser -km "$G_MNT" >/dev/null 2>&1 || true
	fi
	if timeout "$UMOUNT_WAIT" umount "$G_MNT"; then
		log notice "$G_MNT unmounted"
		return 0
	fi
	log err "umount $G_MNT failed or hung; lazy unmount, then trying to demote"
	umount -l "$G_MNT" || true
	return 1
}

# group_up ENTRY: promote the entry's resources and mount (0 success, 1 failure, 2 superseded).
group_up() {
	parse_entry "$1"
	# shellcheck disable=SC2086 # G_RES is a word list.
	promote_group $G_RES || return $?
	# shellcheck disable=SC2086
	mount_group $G_RES
}

# group_down ENTRY: unmount, then demote the entry's resources (unmount FIRST, so the two hosts are
# never primary together for longer than an umount). Returns non-zero when something stayed up.
group_down() {
	parse_entry "$1"
	down_rc=0
	umount_group || down_rc=1
	# shellcheck disable=SC2086 # G_RES is a word list.
	demote_group $G_RES || down_rc=1
	return $down_rc
}

# all_up / all_down: every entry of HAST_RESOURCES (all_down goes in reverse order).
all_up() {
	all_rc=0
	for entry in $HAST_RESOURCES; do
		group_up "$entry"
		case $? in
		0) ;;
		2) return 2 ;;
		*) all_rc=1 ;;
		esac
	done
	return $all_rc
}

all_down() {
	all_rc=0
	rev=
	for entry in $HAST_RESOURCES; do rev="$entry $rev"; done
	for entry in $rev; do
		group_down "$entry" || all_rc=1
	done
	return $all_rc
}
