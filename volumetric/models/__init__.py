"""volumetric.models"""
