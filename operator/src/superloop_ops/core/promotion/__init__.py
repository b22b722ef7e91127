"""Pure promotion rules: gates, apply, orchestrate, drill records, and the PromotionApply
controller's verdict and status (``promotion_apply_resource``).
"""
