{
	"subject": {
		"country": "IR",
		{{- with .Identity.ProvinceName }}
		"province": {{ toJson . }},
		{{- end }}
		"commonName": {{ toJson .Identity.Name }},
		"serialNumber": {{ toJson .Identity.SerialNumber }}
	},
	"keyUsage": ["digitalSignature", "contentCommitment"],
	"unknownExtKeyUsage": [{{ toJson .OID.EKU.DispenseSigning }}],
	"policyIdentifiers": [{{ toJson .OID.Policy.PharmacySigning }}],
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
