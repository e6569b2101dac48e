"""volumetric.testing"""
