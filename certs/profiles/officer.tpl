{
	"subject": {
		"country": "IR",
		{{- with .Identity.Organization }}
		"organization": {{ toJson . }},
		{{- end }}
		"commonName": {{ toJson .Identity.Name }},
		"extraNames": [{"type": "2.5.4.12", "value": "security officer"}]
	},
	"uris": [{{ toJson .Identity.URI }}],
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["clientAuth"],
	"unknownExtKeyUsage": [{{ toJson .OID.EKU.Officer }}],
	"policyIdentifiers": [{{ toJson .OID.Policy.Officer }}],
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
