"""volumetric.train"""
