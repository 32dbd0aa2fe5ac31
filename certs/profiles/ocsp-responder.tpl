{
	"subject": {
		"country": "IR",
		{{- with .Identity.Organization }}
		"organization": {{ toJson . }},
		{{- end }}
		"commonName": {{ toJson .Identity.Name }}
	},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["ocspSigning"],
	"policyIdentifiers": [{{ toJson .OID.Policy.OCSPResponder }}],
	"extensions": [
		{"id": "1.3.6.1.5.5.7.48.1.5", "critical": false, "value": "BQA="},
		{"id": {{ toJson .OID.IdentityExtension }}, "critical": false, "value": {{ toJson .Identity.Extension }}}
	],
	{{- with .URL.Issuer }}
	"issuingCertificateURL": {{ toJson . }},
	{{- end }}
	"basicConstraints": {"isCA": false}
}
