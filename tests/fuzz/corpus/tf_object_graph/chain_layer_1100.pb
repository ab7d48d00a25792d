

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

	layer-0


layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

layer-0

 layer-0

!layer-0

"layer-0

#layer-0

$layer-0

%layer-0

&layer-0

'layer-0

(layer-0

)layer-0

*layer-0

+layer-0

,layer-0

-layer-0

.layer-0

/layer-0

0layer-0

1layer-0

2layer-0

3layer-0

4layer-0

5layer-0

6layer-0

7layer-0

8layer-0

9layer-0

:layer-0

;layer-0

<layer-0

=layer-0

>layer-0

?layer-0

@layer-0

Alayer-0

Blayer-0

Clayer-0

Dlayer-0

Elayer-0

Flayer-0

Glayer-0

Hlayer-0

Ilayer-0

Jlayer-0

Klayer-0

Llayer-0

Mlayer-0

Nlayer-0

Olayer-0

Player-0

Qlayer-0

Rlayer-0

Slayer-0

Tlayer-0

Ulayer-0

Vlayer-0

Wlayer-0

Xlayer-0

Ylayer-0

Zlayer-0

[layer-0

\layer-0

]layer-0

^layer-0

_layer-0

`layer-0

alayer-0

blayer-0

clayer-0

dlayer-0

elayer-0

flayer-0

glayer-0

hlayer-0

ilayer-0

jlayer-0

klayer-0

llayer-0

mlayer-0

nlayer-0

olayer-0

player-0

qlayer-0

rlayer-0

slayer-0

tlayer-0

ulayer-0

vlayer-0

wlayer-0

xlayer-0

ylayer-0

zlayer-0

{layer-0

|layer-0

}layer-0

~layer-0

layer-0

€layer-0

layer-0

‚layer-0

ƒlayer-0

„layer-0

…layer-0

†layer-0

‡layer-0

ˆlayer-0

‰layer-0

Šlayer-0

‹layer-0

Œlayer-0

layer-0

layer-0

layer-0

layer-0

‘layer-0

’layer-0

“layer-0

”layer-0

•layer-0

–layer-0

—layer-0

˜layer-0

™layer-0

šlayer-0

›layer-0

œlayer-0

layer-0

layer-0

Ÿlayer-0

 layer-0

¡layer-0

¢layer-0

£layer-0

¤layer-0

¥layer-0

¦layer-0

§layer-0

¨layer-0

©layer-0

ªlayer-0

«layer-0

¬layer-0

­layer-0

®layer-0

¯layer-0

°layer-0

±layer-0

²layer-0

³layer-0

´layer-0

µlayer-0

¶layer-0

·layer-0

¸layer-0

¹layer-0

ºlayer-0

»layer-0

¼layer-0

½layer-0

¾layer-0

¿layer-0

Àlayer-0

Álayer-0

Âlayer-0

Ãlayer-0

Älayer-0

Ålayer-0

Ælayer-0

Çlayer-0

Èlayer-0

Élayer-0

Êlayer-0

Ëlayer-0

Ìlayer-0

Ílayer-0

Îlayer-0

Ïlayer-0

Ğlayer-0

Ñlayer-0

Òlayer-0

Ólayer-0

Ôlayer-0

Õlayer-0

Ölayer-0

×layer-0

Ølayer-0

Ùlayer-0

Úlayer-0

Ûlayer-0

Ülayer-0

İlayer-0

Şlayer-0

ßlayer-0

àlayer-0

álayer-0

âlayer-0

ãlayer-0

älayer-0

ålayer-0

ælayer-0

çlayer-0

èlayer-0

élayer-0

êlayer-0

ëlayer-0

ìlayer-0

ílayer-0

îlayer-0

ïlayer-0

ğlayer-0

ñlayer-0

òlayer-0

ólayer-0

ôlayer-0

õlayer-0

ölayer-0

÷layer-0

ølayer-0

ùlayer-0

úlayer-0

ûlayer-0

ülayer-0

ılayer-0

şlayer-0

ÿlayer-0

€layer-0

layer-0

‚layer-0

ƒlayer-0

„layer-0

…layer-0

†layer-0

‡layer-0

ˆlayer-0

‰layer-0

Šlayer-0

‹layer-0

Œlayer-0

layer-0

layer-0

layer-0

layer-0

‘layer-0

’layer-0

“layer-0

”layer-0

•layer-0

–layer-0

—layer-0

˜layer-0

™layer-0

šlayer-0

›layer-0

œlayer-0

layer-0

layer-0

Ÿlayer-0

 layer-0

¡layer-0

¢layer-0

£layer-0

¤layer-0

¥layer-0

¦layer-0

§layer-0

¨layer-0

©layer-0

ªlayer-0

«layer-0

¬layer-0

­layer-0

®layer-0

¯layer-0

°layer-0

±layer-0

²layer-0

³layer-0

´layer-0

µlayer-0

¶layer-0

·layer-0

¸layer-0

¹layer-0

ºlayer-0

»layer-0

¼layer-0

½layer-0

¾layer-0

¿layer-0

Àlayer-0

Álayer-0

Âlayer-0

Ãlayer-0

Älayer-0

Ålayer-0

Ælayer-0

Çlayer-0

Èlayer-0

Élayer-0

Êlayer-0

Ëlayer-0

Ìlayer-0

Ílayer-0

Îlayer-0

Ïlayer-0

Ğlayer-0

Ñlayer-0

Òlayer-0

Ólayer-0

Ôlayer-0

Õlayer-0

Ölayer-0

×layer-0

Ølayer-0

Ùlayer-0

Úlayer-0

Ûlayer-0

Ülayer-0

İlayer-0

Şlayer-0

ßlayer-0

àlayer-0

álayer-0

âlayer-0

ãlayer-0

älayer-0

ålayer-0

ælayer-0

çlayer-0

èlayer-0

élayer-0

êlayer-0

ëlayer-0

ìlayer-0

ílayer-0

îlayer-0

ïlayer-0

ğlayer-0

ñlayer-0

òlayer-0

ólayer-0

ôlayer-0

õlayer-0

ölayer-0

÷layer-0

ølayer-0

ùlayer-0

úlayer-0

ûlayer-0

ülayer-0

ılayer-0

şlayer-0

ÿlayer-0

€layer-0

layer-0

‚layer-0

ƒlayer-0

„layer-0

…layer-0

†layer-0

‡layer-0

ˆlayer-0

‰layer-0

Šlayer-0

‹layer-0

Œlayer-0

layer-0

layer-0

layer-0

layer-0

‘layer-0

’layer-0

“layer-0

”layer-0

•layer-0

–layer-0

—layer-0

˜layer-0

™layer-0

šlayer-0

›layer-0

œlayer-0

layer-0

layer-0

Ÿlayer-0

 layer-0

¡layer-0

¢layer-0

£layer-0

¤layer-0

¥layer-0

¦layer-0

§layer-0

¨layer-0

©layer-0

ªlayer-0

«layer-0

¬layer-0

­layer-0

®layer-0

¯layer-0

°layer-0

±layer-0

²layer-0

³layer-0

´layer-0

µlayer-0

¶layer-0

·layer-0

¸layer-0

¹layer-0

ºlayer-0

»layer-0

¼layer-0

½layer-0

¾layer-0

¿layer-0

Àlayer-0

Álayer-0

Âlayer-0

Ãlayer-0

Älayer-0

Ålayer-0

Ælayer-0

Çlayer-0

Èlayer-0

Élayer-0

Êlayer-0

Ëlayer-0

Ìlayer-0

Ílayer-0

Îlayer-0

Ïlayer-0

Ğlayer-0

Ñlayer-0

Òlayer-0

Ólayer-0

Ôlayer-0

Õlayer-0

Ölayer-0

×layer-0

Ølayer-0

Ùlayer-0

Úlayer-0

Ûlayer-0

Ülayer-0

İlayer-0

Şlayer-0

ßlayer-0

àlayer-0

álayer-0

âlayer-0

ãlayer-0

älayer-0

ålayer-0

ælayer-0

çlayer-0

èlayer-0

élayer-0

êlayer-0

ëlayer-0

ìlayer-0

ílayer-0

îlayer-0

ïlayer-0

ğlayer-0

ñlayer-0

òlayer-0

ólayer-0

ôlayer-0

õlayer-0

ölayer-0

÷layer-0

ølayer-0

ùlayer-0

úlayer-0

ûlayer-0

ülayer-0

ılayer-0

şlayer-0

ÿlayer-0

€layer-0

layer-0

‚layer-0

ƒlayer-0

„layer-0

…layer-0

†layer-0

‡layer-0

ˆlayer-0

‰layer-0

Šlayer-0

‹layer-0

Œlayer-0

layer-0

layer-0

layer-0

layer-0

‘layer-0

’layer-0

“layer-0

”layer-0

•layer-0

–layer-0

—layer-0

˜layer-0

™layer-0

šlayer-0

›layer-0

œlayer-0

layer-0

layer-0

Ÿlayer-0

 layer-0

¡layer-0

¢layer-0

£layer-0

¤layer-0

¥layer-0

¦layer-0

§layer-0

¨layer-0

©layer-0

ªlayer-0

«layer-0

¬layer-0

­layer-0

®layer-0

¯layer-0

°layer-0

±layer-0

²layer-0

³layer-0

´layer-0

µlayer-0

¶layer-0

·layer-0

¸layer-0

¹layer-0

ºlayer-0

»layer-0

¼layer-0

½layer-0

¾layer-0

¿layer-0

Àlayer-0

Álayer-0

Âlayer-0

Ãlayer-0

Älayer-0

Ålayer-0

Ælayer-0

Çlayer-0

Èlayer-0

Élayer-0

Êlayer-0

Ëlayer-0

Ìlayer-0

Ílayer-0

Îlayer-0

Ïlayer-0

Ğlayer-0

Ñlayer-0

Òlayer-0

Ólayer-0

Ôlayer-0

Õlayer-0

Ölayer-0

×layer-0

Ølayer-0

Ùlayer-0

Úlayer-0

Ûlayer-0

Ülayer-0

İlayer-0

Şlayer-0

ßlayer-0

àlayer-0

álayer-0

âlayer-0

ãlayer-0

älayer-0

ålayer-0

ælayer-0

çlayer-0

èlayer-0

élayer-0

êlayer-0

ëlayer-0

ìlayer-0

ílayer-0

îlayer-0

ïlayer-0

ğlayer-0

ñlayer-0

òlayer-0

ólayer-0

ôlayer-0

õlayer-0

ölayer-0

÷layer-0

ølayer-0

ùlayer-0

úlayer-0

ûlayer-0

ülayer-0

ılayer-0

şlayer-0

ÿlayer-0

€layer-0

layer-0

‚layer-0

ƒlayer-0

„layer-0

…layer-0

†layer-0

‡layer-0

ˆlayer-0

‰layer-0

Šlayer-0

‹layer-0

Œlayer-0

layer-0

layer-0

layer-0

layer-0

‘layer-0

’layer-0

“layer-0

”layer-0

•layer-0

–layer-0

—layer-0

˜layer-0

™layer-0

šlayer-0

›layer-0

œlayer-0

layer-0

layer-0

Ÿlayer-0

 layer-0

¡layer-0

¢layer-0

£layer-0

¤layer-0

¥layer-0

¦layer-0

§layer-0

¨layer-0

©layer-0

ªlayer-0

«layer-0

¬layer-0

­layer-0

®layer-0

¯layer-0

°layer-0

±layer-0

²layer-0

³layer-0

´layer-0

µlayer-0

¶layer-0

·layer-0

¸layer-0

¹layer-0

ºlayer-0

»layer-0

¼layer-0

½layer-0

¾layer-0

¿layer-0

Àlayer-0

Álayer-0

Âlayer-0

Ãlayer-0

Älayer-0

Ålayer-0

Ælayer-0

Çlayer-0

Èlayer-0

Élayer-0

Êlayer-0

Ëlayer-0

Ìlayer-0

Ílayer-0

Îlayer-0

Ïlayer-0

Ğlayer-0

Ñlayer-0

Òlayer-0

Ólayer-0

Ôlayer-0

Õlayer-0

Ölayer-0

×layer-0

Ølayer-0

Ùlayer-0

Úlayer-0

Ûlayer-0

Ülayer-0

İlayer-0

Şlayer-0

ßlayer-0

àlayer-0

álayer-0

âlayer-0

ãlayer-0

älayer-0

ålayer-0

ælayer-0

çlayer-0

èlayer-0

élayer-0

êlayer-0

ëlayer-0

ìlayer-0

ílayer-0

îlayer-0

ïlayer-0

ğlayer-0

ñlayer-0

òlayer-0

ólayer-0

ôlayer-0

õlayer-0

ölayer-0

÷layer-0

ølayer-0

ùlayer-0

úlayer-0

ûlayer-0

ülayer-0

ılayer-0

şlayer-0

ÿlayer-0

€layer-0

layer-0

‚layer-0

ƒlayer-0

„layer-0

…layer-0

†layer-0

‡layer-0

ˆlayer-0

‰layer-0

Šlayer-0

‹layer-0

Œlayer-0

layer-0

layer-0

layer-0

layer-0

‘layer-0

’layer-0

“layer-0

”layer-0

•layer-0

–layer-0

—layer-0

˜layer-0

™layer-0

šlayer-0

›layer-0

œlayer-0

layer-0

layer-0

Ÿlayer-0

 layer-0

¡layer-0

¢layer-0

£layer-0

¤layer-0

¥layer-0

¦layer-0

§layer-0

¨layer-0

©layer-0

ªlayer-0

«layer-0

¬layer-0

­layer-0

®layer-0

¯layer-0

°layer-0

±layer-0

²layer-0

³layer-0

´layer-0

µlayer-0

¶layer-0

·layer-0

¸layer-0

¹layer-0

ºlayer-0

»layer-0

¼layer-0

½layer-0

¾layer-0

¿layer-0

Àlayer-0

Álayer-0

Âlayer-0

Ãlayer-0

Älayer-0

Ålayer-0

Ælayer-0

Çlayer-0

Èlayer-0

Élayer-0

Êlayer-0

Ëlayer-0

Ìlayer-0

Ílayer-0

Îlayer-0

Ïlayer-0

Ğlayer-0

Ñlayer-0

Òlayer-0

Ólayer-0

Ôlayer-0

Õlayer-0

Ölayer-0

×layer-0

Ølayer-0

Ùlayer-0

Úlayer-0

Ûlayer-0

Ülayer-0

İlayer-0

Şlayer-0

ßlayer-0

àlayer-0

álayer-0

âlayer-0

ãlayer-0

älayer-0

ålayer-0

ælayer-0

çlayer-0

èlayer-0

élayer-0

êlayer-0

ëlayer-0

ìlayer-0

ílayer-0

îlayer-0

ïlayer-0

ğlayer-0

ñlayer-0

òlayer-0

ólayer-0

ôlayer-0

õlayer-0

ölayer-0

÷layer-0

ølayer-0

ùlayer-0

úlayer-0

ûlayer-0

ülayer-0

ılayer-0

şlayer-0

ÿlayer-0

€layer-0

layer-0

‚layer-0

ƒlayer-0

„layer-0

…layer-0

†layer-0

‡layer-0

ˆlayer-0

‰layer-0

Šlayer-0

‹layer-0

Œlayer-0

layer-0

layer-0

layer-0

layer-0

‘layer-0

’layer-0

“layer-0

”layer-0

•layer-0

–layer-0

—layer-0

˜layer-0

™layer-0

šlayer-0

›layer-0

œlayer-0

layer-0

layer-0

Ÿlayer-0

 layer-0

¡layer-0

¢layer-0

£layer-0

¤layer-0

¥layer-0

¦layer-0

§layer-0

¨layer-0

©layer-0

ªlayer-0

«layer-0

¬layer-0

­layer-0

®layer-0

¯layer-0

°layer-0

±layer-0

²layer-0

³layer-0

´layer-0

µlayer-0

¶layer-0

·layer-0

¸layer-0

¹layer-0

ºlayer-0

»layer-0

¼layer-0

½layer-0

¾layer-0

¿layer-0

Àlayer-0

Álayer-0

Âlayer-0

Ãlayer-0

Älayer-0

Ålayer-0

Ælayer-0

Çlayer-0

Èlayer-0

Élayer-0

Êlayer-0

Ëlayer-0

Ìlayer-0

Ílayer-0

Îlayer-0

Ïlayer-0

Ğlayer-0

Ñlayer-0

Òlayer-0

Ólayer-0

Ôlayer-0

Õlayer-0

Ölayer-0

×layer-0

Ølayer-0

Ùlayer-0

Úlayer-0

Ûlayer-0

Ülayer-0

İlayer-0

Şlayer-0

ßlayer-0

àlayer-0

álayer-0

âlayer-0

ãlayer-0

älayer-0

ålayer-0

ælayer-0

çlayer-0

èlayer-0

élayer-0

êlayer-0

ëlayer-0

ìlayer-0

ílayer-0

îlayer-0

ïlayer-0

ğlayer-0

ñlayer-0

òlayer-0

ólayer-0

ôlayer-0

õlayer-0

ölayer-0

÷layer-0

ølayer-0

ùlayer-0

úlayer-0

ûlayer-0

ülayer-0

ılayer-0

şlayer-0

ÿlayer-0

€layer-0

layer-0

‚layer-0

ƒlayer-0

„layer-0

…layer-0

†layer-0

‡layer-0

ˆlayer-0

‰layer-0

Šlayer-0

‹layer-0

Œlayer-0

layer-0

layer-0

layer-0

layer-0

‘layer-0

’layer-0

“layer-0

”layer-0

•layer-0

–layer-0

—layer-0

˜layer-0

™layer-0

šlayer-0

›layer-0

œlayer-0

layer-0

layer-0

Ÿlayer-0

 layer-0

¡layer-0

¢layer-0

£layer-0

¤layer-0

¥layer-0

¦layer-0

§layer-0

¨layer-0

©layer-0

ªlayer-0

«layer-0

¬layer-0

­layer-0

®layer-0

¯layer-0

°layer-0

±layer-0

²layer-0

³layer-0

´layer-0

µlayer-0

¶layer-0

·layer-0

¸layer-0

¹layer-0

ºlayer-0

»layer-0

¼layer-0

½layer-0

¾layer-0

¿layer-0

Àlayer-0

Álayer-0

Âlayer-0

Ãlayer-0

Älayer-0

Ålayer-0

Ælayer-0

Çlayer-0

Èlayer-0

Élayer-0

Êlayer-0

Ëlayer-0

Ìlayer-0

Íkernel
" 
VARIABLE_VALUEdeep/kernelk