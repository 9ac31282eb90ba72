"""The per-model capability table: limits the engine obeys and prices /stats estimates with."""

from __future__ import annotations

from core.config import DEFAULT_MODEL
from core.engines.models import MODELS, model_info


def test_the_default_model_is_in_the_table() -> None:
    assert DEFAULT_MODEL in MODELS
    assert model_info(DEFAULT_MODEL).max_input_images == 14


def test_each_model_reports_its_own_input_limit_and_price() -> None:
    assert model_info("gemini-2.5-flash-image").max_input_images == 3
    assert model_info("gemini-3-pro-image").max_input_images == 14
    assert model_info("gemini-2.5-flash-image").usd_per_image < model_info("gemini-3.1-flash-image").usd_per_image
    assert model_info("gemini-3.1-flash-image").usd_per_image < model_info("gemini-3-pro-image").usd_per_image


def test_output_sizes_follow_the_model() -> None:
    assert model_info("gemini-2.5-flash-image").image_sizes == ("1K",)
    assert {"1K", "2K", "4K"} <= set(model_info("gemini-3-pro-image").image_sizes)
    assert "1:8" in model_info("gemini-3.1-flash-image").aspect_ratios
    assert "1:8" not in model_info("gemini-3-pro-image").aspect_ratios


def test_preview_names_and_resource_names_find_the_same_entry() -> None:
    assert model_info("gemini-3.1-flash-image-preview") is MODELS["gemini-3.1-flash-image"]
    assert model_info("models/gemini-3-pro-image-preview") is MODELS["gemini-3-pro-image"]


def test_offline_costs_nothing() -> None:
    assert model_info("offline").usd_per_image == 0.0


def test_an_unknown_model_gets_tight_limits_and_a_high_estimate() -> None:
    unknown = model_info("gemini-9-imaginary")
    assert unknown.id == "gemini-9-imaginary"
    assert unknown.max_input_images == min(m.max_input_images for m in MODELS.values())
    assert unknown.usd_per_image == max(m.usd_per_image for m in MODELS.values())
    assert unknown.image_sizes == ("1K",)
