"""The kernel edge: rtnetlink messages (rtnl), the netlink executor in one netns (netlink), and
where each slave sits in the PCI tree and what its PF says about it (hostdev)."""
