"""Interpretable latent directions: one adapter, one direction format, several methods, one scoring."""

from factorlens.directions import hspace as _hspace  # noqa: F401 - registers "hspace", "hspace-pca"
from factorlens.directions import sfvq as _sfvq  # noqa: F401 - registers "sfvq"
from factorlens.directions import voynov as _voynov  # noqa: F401 - registers "voynov"
from factorlens.directions.adapter import GeneratorAdapter
from factorlens.directions.direction_set import DirectionSet
from factorlens.directions.methods import DIRECTION_METHODS, discover_directions

__all__ = ["DIRECTION_METHODS", "DirectionSet", "GeneratorAdapter", "discover_directions"]
