{
	"subject": {
		"country": "IR",
		{{- with .Identity.Organization }}
		"organization": {{ toJson . }},
		{{- end }}
		"commonName": {{ toJson .Identity.Name }}
	},
	"keyUsage": ["digitalSignature"],
	"unknownExtKeyUsage": [{{ toJson .OID.EKU.TrustBundleSigning }}],
	"policyIdentifiers": [{{ toJson .OID.Policy.TrustBundleSigning }}],
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
