{
	"subject": {
		"country": "IR",
		{{- with .Identity.Organization }}
		"organization": {{ toJson . }},
		{{- end }}
		"commonName": {{ toJson .Identity.Name }}
	},
	"uris": [{{ toJson .Identity.URI }}],
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["clientAuth"],
	"policyIdentifiers": [{{ toJson .OID.Policy.ServiceTLS }}],
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
