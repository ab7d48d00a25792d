

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

		inner

	
inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	inner

	 inner

	!inner

	"inner

	#inner

	$inner

	%inner

	&inner

	'inner

	(inner

	)inner

	*inner

	+inner

	,inner

	-inner

	.inner

	/inner

	0inner

	1inner

	2inner

	3inner

	4inner

	5inner

	6inner

	7inner

	8inner

	9inner

	:inner

	;inner

	<inner

	=inner

	>inner

	?inner

	@inner

	Ainner

	Binner

	Cinner

	Dinner

	Einner

	Finner

	Ginner

	Hinner

	Iinner

	Jinner

	Kinner

	Linner

	Minner

	Ninner

	Oinner

	Pinner

	Qinner

	Rinner

	Sinner

	Tinner

	Uinner

	Vinner

	Winner

	Xinner

	Yinner

	Zinner

	[inner

	\inner

	]inner

	^inner

	_inner

	`inner

	ainner

	binner

	cinner

	dinner

	einner

	finner

	ginner

	hinner

	iinner

	jinner

	kinner

	linner

	minner

	ninner

	oinner

	pinner

	qinner

	rinner

	sinner

	tinner

	uinner

	vinner

	winner

	xinner

	yinner

	zinner

	{inner

	|inner

	}inner

	~inner

	inner


€inner


inner


‚inner


ƒinner


„inner


…inner


†inner


‡inner


ˆinner


‰inner


Šinner


‹inner


Œinner


inner


inner


inner


inner


‘inner


’inner


“inner


”inner


•inner


–inner


—inner


˜inner


™inner


šinner


›inner


œinner


inner


inner


Ÿinner


 inner


¡inner


¢inner


£inner


¤inner


¥inner


¦inner


§inner


¨inner


©inner


ªinner


«inner


¬inner


­inner


®inner


¯inner


°inner


±inner


²inner


³inner


´inner


µinner


¶inner


·inner


¸inner


¹inner


ºinner


»inner


¼inner


½inner


¾inner


¿inner


Àinner


Áinner


Âinner


Ãinner


Äinner


Åinner


Æinner


Çinner


Èinner


Éinner


Êinner


Ëinner


Ìinner


Íinner


Îinner


Ïinner


Ğinner


Ñinner


Òinner


Óinner


Ôinner


Õinner


Öinner


×inner


Øinner


Ùinner


Úinner


Ûinner


Üinner


İinner


Şinner


ßinner


àinner


áinner


âinner


ãinner


äinner


åinner


æinner


çinner


èinner


éinner


êinner


ëinner


ìinner


íinner


îinner


ïinner


ğinner


ñinner


òinner


óinner


ôinner


õinner


öinner


÷inner


øinner


ùinner


úinner


ûinner


üinner


ıinner


şinner


ÿinner


€inner


inner


‚inner


ƒinner


„inner


…inner


†inner


‡inner


ˆinner


‰inner


Šinner


‹inner


Œinner


inner


inner


inner


inner


‘inner


’inner


“inner


”inner


•inner


–inner


—inner


˜inner


™inner


šinner


›inner


œinner


inner


inner


Ÿinner


 inner


¡inner


¢inner


£inner


¤inner


¥inner


¦inner


§inner


¨inner


©inner


ªinner


«inner


¬inner


­inner


®inner


¯inner


°inner


±inner


²inner


³inner


´inner


µinner


¶inner


·inner


¸inner


¹inner


ºinner


»inner


¼inner


½inner


¾inner


¿inner


Àinner


Áinner


Âinner


Ãinner


Äinner


Åinner


Æinner


Çinner


Èinner


Éinner


Êinner


Ëinner


Ìinner


Íinner


Îinner


Ïinner


Ğinner


Ñinner


Òinner


Óinner


Ôinner


Õinner


Öinner


×inner


Øinner


Ùinner


Úinner


Ûinner


Üinner


İinner


Şinner


ßinner


àinner


áinner


âinner


ãinner


äinner


åinner


æinner


çinner


èinner


éinner


êinner


ëinner


ìinner


íinner


îinner


ïinner


ğinner


ñinner


òinner


óinner


ôinner


õinner


öinner


÷inner


øinner


ùinner


úinner


ûinner


üinner


ıinner


şinner


ÿinner


€inner


inner


‚inner


ƒinner


„inner


…inner


†inner


‡inner


ˆinner


‰inner


Šinner


‹inner


Œinner


inner


inner


inner


inner


‘inner


’inner


“inner


”inner


•inner


–inner


—inner


˜inner


™inner


šinner


›inner


œinner


inner


inner


Ÿinner


 inner


¡inner


¢inner


£inner


¤inner


¥inner


¦inner


§inner


¨inner


©inner


ªinner


«inner


¬inner


­inner


®inner


¯inner


°inner


±inner


²inner


³inner


´inner


µinner


¶inner


·inner


¸inner


¹inner


ºinner


»inner


¼inner


½inner


¾inner


¿inner


Àinner


Áinner


Âinner


Ãinner


Äinner


Åinner


Æinner


Çinner


Èinner


Éinner


Êinner


Ëinner


Ìinner


Íinner


Îinner


Ïinner


Ğinner


Ñinner


Òinner


Óinner


Ôinner


Õinner


Öinner


×inner


Øinner


Ùinner


Úinner


Ûinner


Üinner


İinner


Şinner


ßinner


àinner


áinner


âinner


ãinner


äinner


åinner


æinner


çinner


èinner


éinner


êinner


ëinner


ìinner


íinner


îinner


ïinner


ğinner


ñinner


òinner


óinner


ôinner


õinner


öinner


÷inner


øinner


ùinner


úinner


ûinner


üinner


ıinner


şinner


ÿinner


€inner


inner


‚inner


ƒinner


„inner


…inner


†inner


‡inner


ˆinner


‰inner


Šinner


‹inner


Œinner


inner


inner


inner


inner


‘inner


’inner


“inner


”inner


•inner


–inner


—inner


˜inner


™inner


šinner


›inner


œinner


inner


inner


Ÿinner


 inner


¡inner


¢inner


£inner


¤inner


¥inner


¦inner


§inner


¨inner


©inner


ªinner


«inner


¬inner


­inner


®inner


¯inner


°inner


±inner


²inner


³inner


´inner


µinner


¶inner


·inner


¸inner


¹inner


ºinner


»inner


¼inner


½inner


¾inner


¿inner


Àinner


Áinner


Âinner


Ãinner


Äinner


Åinner


Æinner


Çinner


Èinner


Éinner


Êinner


Ëinner


Ìinner


Íinner


Îinner


Ïinner


Ğinner


Ñinner


Òinner


Óinner


Ôinner


Õinner


Öinner


×inner


Øinner


Ùinner


Úinner


Ûinner


Üinner


İinner


Şinner


ßinner


àinner


áinner


âinner


ãinner


äinner


åinner


æinner


çinner


èinner


éinner


êinner


ëinner


ìinner


íinner


îinner


ïinner


ğinner


ñinner


òinner


óinner


ôinner


õinner


öinner


÷inner


øinner


ùinner


úinner


ûinner


üinner


ıinner


şinner


ÿinner


€inner


inner


‚inner


ƒinner


„inner


…inner


†inner


‡inner


ˆinner


‰inner


Šinner


‹inner


Œinner


inner


inner


inner


inner


‘inner


’inner


“inner


”inner


•inner


–inner


—inner


˜inner


™inner


šinner


›inner


œinner


inner


inner


Ÿinner


 inner


¡inner


¢inner


£inner


¤inner


¥inner


¦inner


§inner


¨inner


©inner


ªinner


«inner


¬inner


­inner


®inner


¯inner


°inner


±inner


²inner


³inner


´inner


µinner


¶inner


·inner


¸inner


¹inner


ºinner


»inner


¼inner


½inner


¾inner


¿inner


Àinner


Áinner


Âinner


Ãinner


Äinner


Åinner


Æinner


Çinner


Èinner


Éinner


Êinner


Ëinner


Ìinner


Íinner


Îinner


Ïinner


Ğinner


Ñinner


Òinner


Óinner


Ôinner


Õinner


Öinner


×inner


Øinner


Ùinner


Úinner


Ûinner


Üinner


İinner


Şinner


ßinner


àinner


áinner


âinner


ãinner


äinner


åinner


æinner


çinner


èinner


éinner


êinner


ëinner


ìinner


íinner


îinner


ïinner


ğinner


ñinner


òinner


óinner


ôinner


õinner


öinner


÷inner


øinner


ùinner


úinner


ûinner


üinner


ıinner


şinner


ÿinner


€inner


inner


‚inner


ƒinner


„inner


…inner


†inner


‡inner


ˆinner


‰inner


Šinner


‹inner


Œinner


inner


inner


inner


inner


‘inner


’inner


“inner


”inner


•inner


–inner


—inner


˜inner


™inner


šinner


›inner


œinner


inner


inner


Ÿinner


 inner


¡inner


¢inner


£inner


¤inner


¥inner


¦inner


§inner


¨inner


©inner


ªinner


«inner


¬inner


­inner


®inner


¯inner


°inner


±inner


²inner


³inner


´inner


µinner


¶inner


·inner


¸inner


¹inner


ºinner


»inner


¼inner


½inner


¾inner


¿inner


Àinner


Áinner


Âinner


Ãinner


Äinner


Åinner


Æinner


Çinner


Èinner


Éinner


Êinner


Ëinner


Ìinner


Íinner


Îinner


Ïinner


Ğinner


Ñinner


Òinner


Óinner


Ôinner


Õinner


Öinner


×inner


Øinner


Ùinner


Úinner


Ûinner


Üinner


İinner


Şinner


ßinner


àinner


áinner


âinner


ãinner


äinner


åinner


æinner


çinner


èinner


éinner


êinner


ëinner


ìinner


íinner


îinner


ïinner


ğinner


ñinner


òinner


óinner


ôinner


õinner


öinner


÷inner


øinner


ùinner


úinner


ûinner


üinner


ıinner


şinner


ÿinner


€inner


inner


‚inner


ƒinner


„inner


…inner


†inner


‡inner


ˆinner


‰inner


Šinner


‹inner


Œinner


inner


inner


inner


inner


‘inner


’inner


“inner


”inner


•inner


–inner


—inner


˜inner


™inner


šinner


›inner


œinner


inner


inner


Ÿinner


 inner


¡inner


¢inner


£inner


¤inner


¥inner


¦inner


§inner


¨inner


©inner


ªinner


«inner


¬inner


­inner


®inner


¯inner


°inner


±inner


²inner


³inner


´inner


µinner


¶inner


·inner


¸inner


¹inner


ºinner


»inner


¼inner


½inner


¾inner


¿inner


Àinner


Áinner


Âinner


Ãinner


Äinner


Åinner


Æinner


Çinner


Èinner


Éinner


Êinner


Ëinner


Ìinner


Íinner


Îinner


Ïinner


Ğinner


Ñinner


Òinner


Óinner


Ôinner


Õinner


Öinner


×inner


Øinner


Ùinner


Úinner


Ûinner


Üinner


İinner


Şinner


ßinner


àinner


áinner


âinner


ãinner


äinner


åinner


æinner


çinner


èinner


éinner


êinner


ëinner


ìinner


íinner


îinner


ïinner


ğinner


ñinner


òinner


óinner


ôinner


õinner


öinner


÷inner


øinner


ùinner


úinner


ûinner


üinner


ıinner


şinner


ÿinner


€inner


inner


‚inner


ƒinner


„inner


…inner


†inner


‡inner


ˆinner


‰inner


Šinner


‹inner


Œinner


inner


inner


inner


inner


‘inner


’inner


“inner


”inner


•inner


–inner


—inner


˜inner


™inner


šinner


›inner


œinner


inner


inner


Ÿinner


 inner


¡inner


¢inner


£inner


¤inner


¥inner


¦inner


§inner


¨inner


©inner


ªinner


«inner


¬inner


­inner


®inner


¯inner


°inner


±inner


²inner


³inner


´inner


µinner


¶inner


·inner


¸inner


¹inner


ºinner


»inner


¼inner


½inner


¾inner


¿inner


Àinner


Áinner


Âinner


Ãinner


Äinner


Åinner


Æinner


Çinner


Èinner


Éinner


Êinner


Ëinner


Ìinner

Íkernel
" 
VARIABLE_VALUEdeep/kernelk