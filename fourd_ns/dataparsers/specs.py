"""Entry points of fourd_ns dataparsers (group ``nerfstudio.dataparser_configs``).

Import-light on purpose: nerfstudio loads this while ``nerfstudio.configs.dataparser_configs`` is still
initialising, so importing a datamanager, pipeline, model or method config here would be circular and
crash every ``ns-*`` command. Only dataparser modules and ``nerfstudio.plugins.registry_dataparser``.
"""

from fourd_ns.dataparsers.nerfies_dataparser import NerfiesDataParserConfig
from fourd_ns.dataparsers.pandaset_dataparser import PandaSetDataParserConfig
from nerfstudio.plugins.registry_dataparser import DataParserSpecification

nerfies_data = DataParserSpecification(
    config=NerfiesDataParserConfig(),
    description="Nerfies / HyperNeRF / NeRF-DS captures with times in [0, 1], lens distortion and seed points",
)

pandaset_data = DataParserSpecification(
    config=PandaSetDataParserConfig(),
    description="PandaSet driving logs (and synthetic ones in that layout): cameras, LiDAR, actor tracks, seed points",
)
