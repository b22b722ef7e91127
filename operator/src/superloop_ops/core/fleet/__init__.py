"""Pure fleet rules: registry validation, rollup, policy candidates, the fleet status surface,
and the Fleet/FleetPolicy controllers' desired status and children (``fleet_resource``).
"""
