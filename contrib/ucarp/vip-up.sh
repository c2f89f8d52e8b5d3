#!/bin/sh
# vip-up.sh: ucarp upscript (`ucarp -u vip-up.sh`, called as: vip-up.sh <interface> <vip>) for HAST.
# ucarp elected this host MASTER: for each resource `hastctl role primary`, wait for /dev/hast/<provname>,
# refuse while split-brained, mount; then add the service address. Safe to run twice.
set -u
. "$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)/hast-carp-lib.sh"

iface=${1:?usage: vip-up.sh interface address}
vip=${2:?usage: vip-up.sh interface address}
lock
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
	role=$(field "$res" role)
	if [ "$role" != primary ]; then
		if ! hctl role primary "$res"; then
			log err "$res: hastctl role primary failed"
			failed=1
			continue
		fi
		log notice "$res: role $role -> primary"
	fi
	prov=$(field "$res" provname)
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
	role=$(field "$res" role)
	if [ "$role" != primary ]; then
		log err "$res: role is '$role', not primary; not mounting"
		failed=1
		continue
	fi
	if is_mounted "$mnt"; then
		log info "$res: $mnt already mounted"
		continue
	fi
	mkdir -p "$mnt"
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
