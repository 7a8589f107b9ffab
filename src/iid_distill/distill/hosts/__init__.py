"""The distribution-matching hosts IID plugs into, registered by name: DM, IDM, DataDAM, M3D.

Add one by subclassing :class:`Host` and calling :func:`~iid_distill.distill.settings.register_host` (docs/new_host.md;
``tests/test_hosts.py`` registers one with its own loss from a test module).
"""

from iid_distill.distill.hosts.base import Host, MatchFeatures, concat_features, map_features
from iid_distill.distill.hosts.datadam import DataDAMHost, attention_map
from iid_distill.distill.hosts.dm import DMHost
from iid_distill.distill.hosts.idm import IDMHost, train_queue_nets
from iid_distill.distill.hosts.m3d import M3DHost, class_mmd2
from iid_distill.distill.settings import register_host

for _host in (DMHost(), IDMHost(), DataDAMHost(), M3DHost()):
    register_host(_host)

__all__ = ["DMHost", "DataDAMHost", "Host", "IDMHost", "M3DHost", "MatchFeatures", "attention_map", "class_mmd2", "concat_features",
           "map_features", "train_queue_nets"]
