"""The per-model capability table: limits the engine obeys and prices /stats estimates with."""

from __future__ import annotations

from core.config import DEFAULT_MODEL
from core.engines.models import MODELS, model_info, successors


def test_the_default_model_is_in_the_table() -> None:
    assert DEFAULT_MODEL in MODELS
    assert model_info(DEFAULT_MODEL).max_input_images == 14


def test_the_default_is_nano_banana_2_1_with_its_sizes_ratios_inputs_and_price() -> None:
    info = model_info(DEFAULT_MODEL)
    assert DEFAULT_MODEL == "gemini-nano-banana-2.1" and info.status == "current"
    assert info.image_sizes == ("1K", "2K", "4K") and len(info.aspect_ratios) == 14
    assert info.max_people == 4
    assert info.price("1K") == 0.0336 and info.price("1K") < info.price("2K") < info.price("4K")


def test_each_model_reports_its_own_input_limit_and_price() -> None:
    assert model_info("gemini-3.1-flash-lite-image").max_input_images == 3
    assert model_info("gemini-3-pro-image").max_input_images == 14
    assert model_info("gemini-3-pro-image").max_people == 5
    assert model_info(DEFAULT_MODEL).usd_per_image < model_info("gemini-3.1-flash-image").usd_per_image
    assert model_info("gemini-3.1-flash-image").usd_per_image < model_info("gemini-3-pro-image").usd_per_image
    assert model_info("gemini-3-pro-image").price("4K") == 0.24


def test_retired_models_say_so_and_name_their_successor() -> None:
    assert model_info("gemini-3.1-flash-image").status == "deprecated"
    assert model_info("gemini-2.5-flash-image").status == "shut_down"
    assert successors("gemini-3.1-flash-image") == ["gemini-nano-banana-2.1"]
    assert successors("gemini-2.5-flash-image") == ["gemini-nano-banana-2.1"]
    assert all(m.successor in MODELS for m in MODELS.values() if m.successor)


def test_output_sizes_follow_the_model() -> None:
    assert model_info("gemini-3.1-flash-lite-image").image_sizes == ("1K",)
    assert {"1K", "2K", "4K"} <= set(model_info("gemini-3-pro-image").image_sizes)
    assert "1:8" in model_info("gemini-3.1-flash-image").aspect_ratios
    assert "1:8" not in model_info("gemini-3-pro-image").aspect_ratios


def test_resource_names_find_the_entry_and_shut_down_preview_ids_are_not_aliases() -> None:
    assert model_info("models/gemini-3-pro-image") is MODELS["gemini-3-pro-image"]
    # The -preview ids were shut down on 2026-06-25: they are unknown models now, not aliases.
    assert model_info("gemini-3.1-flash-image-preview").notes == model_info("gemini-9-imaginary").notes


def test_offline_costs_nothing() -> None:
    assert model_info("offline").usd_per_image == 0.0


def test_an_unknown_model_gets_tight_limits_and_a_high_estimate() -> None:
    unknown = model_info("gemini-9-imaginary")
    assert unknown.id == "gemini-9-imaginary"
    assert unknown.max_input_images == min(m.max_input_images for m in MODELS.values())
    assert unknown.usd_per_image == max(m.usd_per_image for m in MODELS.values())
    assert unknown.image_sizes == ("1K",)
