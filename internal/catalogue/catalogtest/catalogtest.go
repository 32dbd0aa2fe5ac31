// Package catalogtest provides catalogue test data for any package's tests
// (a small realistic sample and a generator of large catalogues) and the
// conformance suites that every catalogue.Store, and the service over it,
// must pass.
package catalogtest

import (
	"fmt"
	"strings"
)

// Codes in Sample, for tests that look items up.
const (
	Acetaminophen      = "1000105" // 500 mg tablet, OTC
	Amoxicillin        = "1000210" // 500 mg capsule
	Metformin          = "1000315"
	Atorvastatin       = "1000420"
	Omeprazole         = "1000525"
	Methylphenidate    = "1000630" // psychotropic; psychiatry, neurology, pediatrics; no paper
	Morphine           = "1000735" // narcotic injection; no paper
	InsulinGlargine    = "1000840"
	Isotretinoin       = "1000945" // from age 12; dermatology
	Letrozole          = "1001050"
	Clomiphene         = "1001155" // female only
	Sildenafil         = "1001260" // male only
	AcetaminophenSyrup = "1001365" // paediatric: up to age 12

	CBC           = "800100" // lab
	FBS           = "800200" // lab
	LipidProfile  = "800300" // lab
	ChestXRay     = "700100" // imaging
	BrainMRI      = "700500" // imaging; neurology, neurosurgery
	WoundSuturing = "900100" // procedure
)

// DrugsHeader and ServicesHeader are the header rows of the two files.
const (
	DrugsHeader    = "code,name,name_fa,atc,form,strength,price,coverage_percent,prescription_only,max_quantity,professions,specialties,min_age_years,max_age_years,sex,controlled_class,paper_allowed"
	ServicesHeader = "code,kind,name,name_fa,price,coverage_percent,max_quantity,professions,specialties,min_age_years,max_age_years,sex,paper_allowed"
)

// Sample returns a small, realistic drugs file and services file (13
// drugs, 6 services). Like real exports, it spells one Persian name with
// Arabic yeh (سيلدنافيل) and one price with Persian digits; the import
// normalises both.
func Sample() (drugs, services string) {
	drugs = DrugsHeader + "\n" +
		Acetaminophen + ",Acetaminophen,استامینوفن,N02BE01,tablet,500 mg,25000,70,false,60,,,0,0,,,true\n" +
		Amoxicillin + ",Amoxicillin,آموکسی\u200cسیلین,J01CA04,capsule,500 mg,32000,70,true,30,physician|dentist|midwife,,0,0,,,true\n" +
		Metformin + ",Metformin,متفورمین,A10BA02,tablet,500 mg,18000,90,true,180,physician,,0,0,,,true\n" +
		Atorvastatin + ",Atorvastatin,آتورواستاتین,C10AA05,tablet,20 mg,۴۵۰۰۰,70,true,90,physician,,0,0,,,true\n" +
		Omeprazole + ",Omeprazole,امپرازول,A02BC01,capsule,20 mg,38000,70,true,60,physician,,0,0,,,true\n" +
		Methylphenidate + ",Methylphenidate,متیل\u200cفنیدیت,N06BA04,tablet,10 mg,52000,70,true,60,physician,psychiatry|neurology|pediatrics,6,0,,psychotropic,false\n" +
		Morphine + ",Morphine,مورفین,N02AA01,injection,10 mg/ml,150000,90,true,10,physician,,0,0,,narcotic,false\n" +
		InsulinGlargine + ",Insulin glargine,انسولین گلارژین,A10AE04,injection pen,100 IU/ml,2500000,90,true,5,physician,,0,0,,,true\n" +
		Isotretinoin + ",Isotretinoin,ایزوترتینوئین,D10BA01,capsule,20 mg,95000,70,true,60,physician,dermatology,12,0,,,false\n" +
		Letrozole + ",Letrozole,لتروزول,L02BG04,tablet,2.5 mg,120000,90,true,30,physician,oncology|gynecology,18,0,,,true\n" +
		Clomiphene + ",Clomiphene,کلومیفن,G03GB02,tablet,50 mg,40000,70,true,10,physician|midwife,,18,0,female,,true\n" +
		Sildenafil + ",Sildenafil,سيلدنافيل,G04BE03,tablet,50 mg,60000,0,true,8,physician,,18,0,male,,true\n" +
		AcetaminophenSyrup + `,Acetaminophen,استامینوفن,N02BE01,syrup,"120 mg/5 ml, 60 ml",90000,70,false,3,,,0,12,,,true` + "\n"
	services = ServicesHeader + "\n" +
		CBC + ",lab,Complete blood count (CBC),شمارش کامل خون,450000,70,1,,,0,0,,true\n" +
		FBS + ",lab,Fasting blood sugar (FBS),قند خون ناشتا,120000,70,1,,,0,0,,true\n" +
		LipidProfile + ",lab,Lipid profile,پروفایل چربی,600000,70,1,,,0,0,,true\n" +
		ChestXRay + ",imaging,Chest X-ray,رادیوگرافی قفسه سینه,900000,70,1,physician,,0,0,,true\n" +
		BrainMRI + ",imaging,Brain MRI,ام\u200cآر\u200cآی مغز,9500000,70,1,physician,neurology|neurosurgery,0,0,,false\n" +
		WoundSuturing + ",procedure,Suture of superficial wound,بخیه زخم سطحی,1500000,70,1,physician|midwife,,0,0,,true\n"
	return drugs, services
}

// Generate returns a synthetic catalogue of n items (four in five drugs),
// with varied Latin and Persian names built from syllables, for load
// tests and benchmarks. The same n always gives the same files. Codes are
// G000001… for drugs and S000001… for services.
func Generate(n int) (drugs, services string) {
	latin := []string{"ab", "ce", "dor", "fen", "gli", "hyd", "ka", "lor", "mo", "ni", "pra", "ro", "sul", "ta", "vo", "zol"}
	persian := []string{"اب", "سه", "دور", "فن", "گلی", "هید", "کا", "لور", "مو", "نی", "پرا", "رو", "سول", "تا", "وو", "زول"}
	forms := []string{"tablet", "capsule", "syrup", "injection", "ointment"}
	kinds := []string{"lab", "imaging", "procedure"}
	var d, s strings.Builder
	d.WriteString(DrugsHeader + "\n")
	s.WriteString(ServicesHeader + "\n")
	for i := 0; i < n; i++ {
		// Names of three to five syllables, picked by the digits of i in
		// base 16, so that they are distinct enough to search.
		var ln, pn strings.Builder
		for k, x := 0, i*7919+13; k < 3+i%3; k, x = k+1, x/16 {
			ln.WriteString(latin[x%16])
			if k > 0 && k%2 == 0 {
				pn.WriteString("\u200c")
			}
			pn.WriteString(persian[x%16])
		}
		name := strings.ToUpper(ln.String()[:1]) + ln.String()[1:]
		price := 10000 + (i*104729)%5000000
		if i%5 == 4 {
			fmt.Fprintf(&s, "S%06d,%s,%s test,%s,%d,%d,1,,,0,0,,true\n",
				i, kinds[i%3], name, pn.String(), price, 70)
			continue
		}
		fmt.Fprintf(&d, "G%06d,%s,%s,N02BE01,%s,%d mg,%d,%d,%t,%d,physician,,0,0,,,true\n",
			i, name, pn.String(), forms[i%len(forms)], 10*(1+i%50), price, 70+i%3*10, i%2 == 0, i%100)
	}
	return d.String(), s.String()
}
