{
	"subject": {
		"country": "IR",
		{{- with .Identity.Organization }}
		"organization": {{ toJson . }},
		{{- end }}
		"commonName": {{ toJson .Identity.Name }}
	},
	"keyUsage": ["digitalSignature", "contentCommitment"],
	"unknownExtKeyUsage": [{{ toJson .OID.EKU.ExchangeReceiptSigning }}],
	"policyIdentifiers": [{{ toJson .OID.Policy.ExchangeReceiptSigning }}],
	"extensions": [{"id": {{ toJson .OID.IdentityExtension }}, "critical": false, "value": {{ toJson .Identity.Extension }}}],
	{{- with .URL.CRL }}
	"crlDistributionPoints": {{ toJson . }},
	{{- end }}
	{{- with .URL.OCSP }}
	"ocspServer": {{ toJson . }},
	{{- end }}
	{{- with .URL.Issuer }}
	"issuingCertificateURL": {{ toJson . }},
	{{- end }}
	"basicConstraints": {"isCA": false}
}
