"""Model card templates shipped inside the hf_ssl wheel (as ``hf_ssl.model_cards``)."""
