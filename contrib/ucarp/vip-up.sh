#!/bin/sh
# vip-up.sh: ucarp upscript (`ucarp -u vip-up.sh`, called as: vip-up.sh <interface> <vip>) for HAST.
# ucarp elected this host MASTER: for each resource `hastctl role primary`, wait for /dev/hast/<provname>,
# refuse while split-brained or while the peer is still primary, mount; then add the service address.
# Returns at once and works in the background (see `request` in hast-carp-lib.sh). Safe to run twice.
set -u
. "$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)/hast-carp-lib.sh"

iface=${1:?usage: vip-up.sh interface address}
vip=${2:?usage: vip-up.sh interface address}
request master "$@"
lock
if superseded; then
	log info "MASTER for $vip on $iface: overtaken by a later ucarp event, nothing to do"
	exit 0
fi
log notice "becoming MASTER for $vip on $iface"

failed=0
for entry in $HAST_RESOURCES; do
	res=${entry%%:*}
	rest=${entry#*:}
	mnt=${rest%%:*}
	rest=${rest#*:}
	fstype=${rest%%:*}
	opts=
	case "$rest" in *:*) opts=${rest#*:} ;; esac

	if split_brain "$res"; then
		log err "$res: split-brain marker $STATE_DIR/$res.split-brain present, not promoting nor mounting"
		failed=1
		continue
	fi
	status "$res"
	role=$(sfield role)
	prov=$(sfield provname)
	# Never two primaries: a secondary whose worker is connected (status complete) serves a live
	# primary. CARP elected us, so the peer is demoting (its vip-down.sh runs), dead (our secondary
	# notices only after its receive timeout, so probe it), or cut off from us on the public network
	# only; wait for it to let go, and refuse if it does not.
	if [ "$role" = secondary ] && [ "$(sfield status)" = complete ]; then
		raddr=$(sfield remoteaddr)
		log notice "$res: the peer is still primary and connected; waiting up to ${PEER_WAIT}s for it to let go"
		waited=0
		while :; do
			if ! peer_alive "$raddr"; then
				log notice "$res: the peer does not answer on the HAST link ($raddr): it is down"
				break
			fi
			if superseded; then
				log notice "$res: ucarp left MASTER meanwhile, not promoting"
				exit 0
			fi
			if [ "$waited" -ge "$PEER_WAIT" ]; then
				log err "$res: the peer is still primary after ${PEER_WAIT}s, not promoting (CARP split?)"
				failed=1
				continue 2
			fi
			sleep 1
			waited=$((waited + 1))
			[ "$(field "$res" status)" = complete ] || break
		done
	fi
	if [ "$role" != primary ]; then
		# Refused (75) while a primary is still connected to us; failed (66, 70, 71) when the worker
		# could not open the disk or set up the device: either way no mount, no address.
		if ! set_role primary "$res"; then
			failed=1
			continue
		fi
		log notice "$res: role $role -> primary"
	fi
	dev=/dev/hast/${prov:-$res}
	waited=0
	while [ ! -b "$dev" ] && [ "$waited" -lt $((DEVICE_WAIT * 10)) ]; do
		sleep 0.1
		waited=$((waited + 1))
	done
	if [ ! -b "$dev" ]; then
		log err "$res: $dev did not appear within ${DEVICE_WAIT}s"
		failed=1
		continue
	fi
	if is_mounted "$mnt"; then
		log info "$res: $mnt already mounted"
		continue
	fi
	mkdir -p "$mnt"
	[ "$fstype" = btrfs ] && forget_btrfs
	# No fsck: btrfs is consistent after a crash; ext4/xfs replay their journal in mount.
	if ! mount -t "$fstype" ${opts:+-o "$opts"} "$dev" "$mnt"; then
		log err "$res: mount -t $fstype $dev $mnt failed"
		failed=1
		continue
	fi
	# The first connection attempt completes before the device serves I/O, so a split-brain found
	# on promotion has fired its hook by now: back out rather than serve diverged data.
	if split_brain "$res"; then
		log err "$res: split-brain detected on promotion, unmounting $mnt"
		umount "$mnt" || umount -l "$mnt"
		failed=1
		continue
	fi
	log notice "$res: $dev mounted on $mnt ($fstype)"
done

if [ "$failed" -ne 0 ]; then
	log err "not adding $vip: a resource could not be brought up"
	exit 1
fi
if ip -o addr show dev "$iface" | grep -q " $vip/"; then
	log info "$vip already on $iface"
else
	ip addr add "$vip/$VIP_PREFIX" dev "$iface"
	log notice "$vip added on $iface"
fi
exit 0
