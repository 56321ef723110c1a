"""skipexp: reproduce and extend Drozdzal et al. (DLMIA 2016) on skip connections in deep FCNs."""

__version__ = "0.1.0"
