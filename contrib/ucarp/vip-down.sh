#!/bin/sh
# vip-down.sh: ucarp downscript (`ucarp -d vip-down.sh`, called as: vip-down.sh <interface> <vip>) for
# HAST. This host is BACKUP (or ucarp starts/stops): unmount and demote every resource FIRST (so the
# two hosts are never primary together for longer than an umount), then drop the service address.
# Also run by ucarp at start: a resource in role init after a boot becomes secondary. Returns at once
# and works in the background (see `request` in hast-carp-lib.sh). Safe to run twice.
set -u
. "$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)/hast-carp-lib.sh"

iface=${1:?usage: vip-down.sh interface address}
vip=${2:?usage: vip-down.sh interface address}
request backup "$@"
lock
if superseded; then
	log info "BACKUP for $vip on $iface: overtaken by a later ucarp event, nothing to do"
	exit 0
fi
log notice "becoming BACKUP for $vip on $iface"

failed=0
for entry in $HAST_RESOURCES; do
	res=${entry%%:*}
	rest=${entry#*:}
	mnt=${rest%%:*}

	if is_mounted "$mnt"; then
		if [ "$KILL_USERS" = yes ]; then
			fuser -km "$mnt" >/dev/null 2>&1 || true
		fi
		if timeout "$UMOUNT_WAIT" umount "$mnt"; then
			log notice "$res: $mnt unmounted"
		else
			# Try to demote anyway: hastd refuses (75) while the lazily unmounted file system still
			# uses the device, and then this host stays primary, connected, which keeps the new
			# master from promoting (never two primaries).
			log err "$res: umount $mnt failed or hung; lazy unmount, then trying to demote"
			umount -l "$mnt" || true
			failed=1
		fi
	fi
	role=$(field "$res" role)
	case "$role" in
	primary)
		# Refused (75) while the device is still mounted or open (a lazy umount with files open
		# counts): this host stays primary and keeps serving, so the new MASTER's vip-up.sh sees a
		# connected primary and refuses to promote; no second primary, no lost device. The
		# administrator frees the device and reruns this script.
		if set_role secondary "$res"; then
			log notice "$res: role primary -> secondary"
		else
			failed=1
		fi
		;;
	init)
		if [ "$SECONDARY_FROM_INIT" = yes ]; then
			if set_role secondary "$res"; then
				log notice "$res: role init -> secondary"
			else
				failed=1
			fi
		fi
		;;
	secondary) log info "$res: already secondary" ;;
	*) log err "$res: unknown role '$role' (is hastd running?)"; failed=1 ;;
	esac
done

if ip -o addr show dev "$iface" 2>/dev/null | grep -q " $vip/"; then
	ip addr del "$vip/$VIP_PREFIX" dev "$iface" && log notice "$vip removed from $iface"
fi
exit "$failed"
